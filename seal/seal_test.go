package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testAD = "AKIAIOSFODNN7EXAMPLE"

func newTestSealer(t *testing.T) *Sealer {
	t.Helper()
	s, err := New(bytes.Repeat([]byte{0x42}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New accepted a %d-byte key", n)
		}
	}
	if _, err := New(make([]byte, KeySize)); err != nil {
		t.Errorf("New refused a %d-byte key: %v", KeySize, err)
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := newTestSealer(t)
	for _, pt := range [][]byte{
		[]byte("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
		{},
		bytes.Repeat([]byte{0}, 4096),
	} {
		sealed, err := s.Seal(pt, []byte(testAD))
		if err != nil {
			t.Fatal(err)
		}
		if sealed[0] != version {
			t.Errorf("leading byte %d, want version %d", sealed[0], version)
		}
		if len(pt) > 0 && bytes.Contains(sealed, pt) {
			t.Error("sealed value contains the plaintext")
		}
		got, err := s.Open(sealed, []byte(testAD))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("Open = %q, want %q", got, pt)
		}
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	s := newTestSealer(t)
	seen := map[string]bool{}
	for range 100 {
		sealed, err := s.Seal([]byte("secret"), []byte(testAD))
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(sealed)] {
			t.Fatal("two seals of the same secret are equal: nonce reuse")
		}
		seen[string(sealed)] = true
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	s := newTestSealer(t)
	sealed, err := s.Seal([]byte("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), []byte(testAD))
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := s.Open(bad, []byte(testAD)); !errors.Is(err, ErrOpen) {
			t.Fatalf("byte %d altered: err = %v, want ErrOpen", i, err)
		}
	}
	for n := range len(sealed) {
		if _, err := s.Open(sealed[:n], []byte(testAD)); !errors.Is(err, ErrOpen) {
			t.Fatalf("truncated to %d bytes: err = %v, want ErrOpen", n, err)
		}
	}
	if _, err := s.Open(append(bytes.Clone(sealed), 0), []byte(testAD)); !errors.Is(err, ErrOpen) {
		t.Errorf("extended: err = %v, want ErrOpen", err)
	}
	if _, err := s.Open(sealed, []byte("AKIAOTHEREXAMPLE0000")); !errors.Is(err, ErrOpen) {
		t.Errorf("other additional data: err = %v, want ErrOpen", err)
	}
	if _, err := s.Open(sealed, nil); !errors.Is(err, ErrOpen) {
		t.Errorf("no additional data: err = %v, want ErrOpen", err)
	}
	other, err := New(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(sealed, []byte(testAD)); !errors.Is(err, ErrOpen) {
		t.Errorf("other key: err = %v, want ErrOpen", err)
	}
	future := bytes.Clone(sealed)
	future[0] = version + 1
	if _, err := s.Open(future, []byte(testAD)); !errors.Is(err, ErrOpen) {
		t.Errorf("unknown version: err = %v, want ErrOpen", err)
	}
}

func TestLoadOrCreateCreatesPrivateKeyAndReloadsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	s, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if fi.Size() != KeySize {
		t.Errorf("key file holds %d bytes, want %d", fi.Size(), KeySize)
	}
	sealed, err := s.Seal([]byte("secret"), []byte(testAD))
	if err != nil {
		t.Fatal(err)
	}
	// A restart loads the same key and opens what the first run sealed.
	s2, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Open(sealed, []byte(testAD)); err != nil || string(got) != "secret" {
		t.Fatalf("Open after reload = %q, %v", got, err)
	}
	// Another data directory gets another key.
	s3, err := LoadOrCreate(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Open(sealed, []byte(testAD)); !errors.Is(err, ErrOpen) {
		t.Errorf("a fresh key opened another key's value: %v", err)
	}
}

func TestLoadOrCreateRefusesBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	good := bytes.Repeat([]byte{1}, KeySize)
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string // in the error
	}{
		{"world readable", good, 0o644, "chmod 600"},
		{"group readable", good, 0o640, "chmod 600"},
		{"group writable", good, 0o620, "chmod 600"},
		{"empty", nil, 0o600, "found 0"},
		{"short", []byte("short"), 0o600, "found 5"},
		{"long", bytes.Repeat([]byte{1}, 2*KeySize), 0o600, "found 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".key")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			// Chmod explicitly: WriteFile's mode is filtered by the umask.
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreate(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the path and %q", err, tt.want)
			}
			// Refusing must not replace or alter the file.
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, tt.content) {
				t.Errorf("file changed to %q (%v)", got, err)
			}
		})
	}

	t.Run("directory", func(t *testing.T) {
		path := filepath.Join(dir, "adir")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreate(path); err == nil {
			t.Error("a directory was accepted as a key file")
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := LoadOrCreate(filepath.Join(dir, "nope", "secrets.key")); err == nil {
			t.Error("a key file in a missing directory was created")
		}
	})
	t.Run("private file accepted", func(t *testing.T) {
		path := filepath.Join(dir, "good.key")
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := LoadOrCreate(path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := New(good)
		sealed, _ := want.Seal([]byte("x"), nil)
		if _, err := s.Open(sealed, nil); err != nil {
			t.Errorf("loaded a different key: %v", err)
		}
	})
}
