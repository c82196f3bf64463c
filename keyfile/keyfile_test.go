package keyfile

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("created with mode %04o, want 0600", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the directory holds %d entries, want only the key (no temporary files)", len(ents))
	}
	b, _ := os.ReadFile(path)
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Errorf("the file is not a PKCS#8 PEM block:\n%s", b)
	}
}

func TestLoadOrCreateConcurrentlyAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.key")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateEd25519(path) })
	}
	wg.Wait()
	final, err := LoadOrCreateEd25519(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if !keys[i].Equal(final) {
			t.Errorf("goroutine %d got a key that is not the one on disk", i)
		}
	}
}

func TestPublicRoundTrip(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadOrCreateEd25519(filepath.Join(dir, "audit.key"))
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	path := filepath.Join(dir, "audit.pub")
	if err := WritePublic(path, pub); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("public key mode %04o, want 0644", fi.Mode().Perm())
	}
	got, err := LoadEd25519Public(path)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	// WritePublic replaces an existing file.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := WritePublic(path, other); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadEd25519Public(path); !got.Equal(other) {
		t.Error("WritePublic did not replace the file")
	}
}

func TestKeyID(t *testing.T) {
	// A fixed key, its id computed independently (Python's cryptography
	// package), so that the format cannot drift: digests in existing
	// trails name their key by this id.
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	const want = "SHA256:E545QOZLVJFyIIjZoNdBYo/IJuCUddNBp4Cs3jxLgHA"
	if got := KeyID(pub); got != want {
		t.Errorf("KeyID = %q, want %q", got, want)
	}
	other := ed25519.NewKeyFromSeed(append(make([]byte, ed25519.SeedSize-1), 1)).Public().(ed25519.PublicKey)
	if KeyID(other) == want {
		t.Error("two keys share an id")
	}
}

func TestLoadOrCreateRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // despite the umask
			t.Fatal(err)
		}
		return p
	}
	good, err := LoadOrCreateEd25519(filepath.Join(dir, "good.key"))
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(good)
	goodPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)

	for _, tc := range []struct {
		name, path, want string
	}{
		{"world readable", write("world.key", goodPEM, 0o644), "readable by others"},
		{"group readable", write("group.key", goodPEM, 0o640), "readable by others"},
		{"garbage", write("garbage.key", []byte("not a key"), 0o600), "no PEM private key"},
		{"public key", write("pub.key", EncodePublic(good.Public().(ed25519.PublicKey)), 0o600), "no PEM private key"},
		{"ecdsa", write("ec.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o600), "not an Ed25519"},
		{"directory", dir, "not a regular file"},
		{"no directory", filepath.Join(dir, "missing", "x.key"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadOrCreateEd25519(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// A refused file is left as it was.
	if b, _ := os.ReadFile(filepath.Join(dir, "garbage.key")); string(b) != "not a key" {
		t.Error("a refused key file was changed")
	}
}

func TestParsePublicRefuses(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	for name, b := range map[string][]byte{
		"garbage": []byte("nope"),
		"private": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"ecdsa":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}),
		"bad der": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}),
	} {
		if _, err := ParsePublic(b); err == nil {
			t.Errorf("%s was accepted as a public key", name)
		}
	}
	if _, err := LoadEd25519Public(filepath.Join(t.TempDir(), "absent.pub")); err == nil {
		t.Error("a missing public key file was accepted")
	}
}
