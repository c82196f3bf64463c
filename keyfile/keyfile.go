// Package keyfile keeps Ed25519 keys in PEM files: the server's audit
// digest key and its key-signing key.
//
// Private keys are PKCS#8 ("PRIVATE KEY"), public keys PKIX ("PUBLIC KEY"),
// the formats openssl and most tools read.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/postern-dev/postern/atomicfile"
)

// maxFile bounds what is read from a key file: a PEM Ed25519 key is about
// 120 bytes, so anything much larger is not one.
const maxFile = 64 << 10

// LoadOrCreateEd25519 reads a PKCS#8 PEM private key from path, creating
// one (mode 0600, exclusively, synced) when the file does not exist.
// Processes racing to create the same file all end up with the one key
// that won. A key file that its group or others may read, or that is not a
// regular file, is refused rather than trusted.
func LoadOrCreateEd25519(path string) (ed25519.PrivateKey, error) {
	k, err := loadPrivate(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = createPrivate(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our two calls: use its key.
		return loadPrivate(path)
	}
	return k, err
}

func loadPrivate(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Check the opened file, not the name, so that nothing can be swapped
	// in between the check and the read.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s is too large to be a key file", path)
	}
	k, err := ParsePrivate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func createPrivate(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	// Write a temporary file and hard-link it into place: the link fails
	// when path exists (as O_EXCL would), and neither a concurrent reader
	// nor a crash can ever see a half-written key at path.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-key-*") // 0600, O_EXCL
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, data); err != nil {
		return nil, err
	}
	err = os.Link(tmp.Name(), path)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: create in place instead.
		err = createExclusive(path, data)
	}
	if err != nil {
		return nil, err
	}
	// The key must survive a crash: digests signed with a key that was
	// then lost could never be verified against audit.pub.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return priv, nil
}

func createExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := writeSynced(f, data); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// writeSynced writes data to f, syncs and closes it.
func writeSynced(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ParsePrivate parses a PKCS#8 PEM Ed25519 private key.
func ParsePrivate(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 private key", k)
	}
	return ek, nil
}

// EncodePublic returns pub as a PEM "PUBLIC KEY" block.
func EncodePublic(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // cannot fail for a well-formed Ed25519 key
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePublic replaces path with pub as PEM (mode 0644), atomically.
func WritePublic(path string, pub ed25519.PublicKey) error {
	return atomicfile.Write(path, EncodePublic(pub), 0o644)
}

// ParsePublic parses a PEM public key.
func ParsePublic(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("no PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 public key", k)
	}
	return pub, nil
}

// LoadEd25519Public reads a PEM public key file.
func LoadEd25519Public(path string) (ed25519.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s is too large to be a key file", path)
	}
	pub, err := ParsePublic(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// KeyID is a short, stable name for a public key in OpenSSH's style:
// "SHA256:" and the unpadded base64 of the SHA-256 of the raw 32-byte key.
// (OpenSSH hashes its own wire encoding instead, so the two differ for the
// same key; this one is for Postern's own keys only.)
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}
