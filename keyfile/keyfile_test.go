package keyfile

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateIsStable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.key")
	k1, err := LoadOrCreateEd25519(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateEd25519(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("the key changed between loads")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	pubPath := filepath.Join(dir, "audit.pub")
	pub := k1.Public().(ed25519.PublicKey)
	if err := WritePublic(pubPath, pub); err != nil {
		t.Fatal(err)
	}
	got, err := LoadEd25519Public(pubPath)
	if err != nil || !got.Equal(k1.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	if id := KeyID(got); !strings.HasPrefix(id, "SHA256:") || id != KeyID(got) || len(id) != 50 {
		t.Errorf("KeyID = %q", id)
	}
}

func TestLoadOrCreateRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.key")
	if _, err := LoadOrCreateEd25519(loose); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)
	if _, err := LoadOrCreateEd25519(loose); err == nil {
		t.Error("a world-readable key was accepted")
	}
	garbage := filepath.Join(dir, "garbage.key")
	os.WriteFile(garbage, []byte("not a key"), 0o600)
	if _, err := LoadOrCreateEd25519(garbage); err == nil {
		t.Error("garbage was accepted as a key")
	}
	if _, err := ParsePublic([]byte("nope")); err == nil {
		t.Error("garbage was accepted as a public key")
	}
}
