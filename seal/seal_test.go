package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpenRoundTripAndTamper(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	s, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	secret := []byte("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	sealed, err := s.Seal(secret, []byte("AKIAEXAMPLE"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	again, _ := s.Seal(secret, []byte("AKIAEXAMPLE"))
	if bytes.Equal(sealed, again) {
		t.Error("two seals of the same secret are equal: nonce reuse")
	}
	// The same key file opens it after a restart.
	s2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Open(sealed, []byte("AKIAEXAMPLE"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q %v", got, err)
	}
	for i := range sealed {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 1
		if _, err := s.Open(bad, []byte("AKIAEXAMPLE")); !errors.Is(err, ErrOpen) {
			t.Fatalf("byte %d altered: err = %v", i, err)
		}
	}
	if _, err := s.Open(sealed, []byte("AKIAOTHER")); !errors.Is(err, ErrOpen) {
		t.Error("opened under another access key id")
	}
	other, _ := New(bytes.Repeat([]byte{7}, KeySize))
	if _, err := other.Open(sealed, []byte("AKIAEXAMPLE")); !errors.Is(err, ErrOpen) {
		t.Error("opened with another key")
	}
	if _, err := s.Open(nil, nil); !errors.Is(err, ErrOpen) {
		t.Error("opened nothing")
	}
}

func TestLoadOrCreateRefusesLooseKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, KeySize), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil {
		t.Error("a world-readable key file was accepted")
	}
	os.Chmod(path, 0o600)
	if _, err := LoadOrCreate(path); err != nil {
		t.Errorf("a private key file was refused: %v", err)
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadOrCreate(path); err == nil {
		t.Error("a short key was accepted")
	}
}
