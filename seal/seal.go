// Package seal encrypts secrets at rest (access-key secrets) with a key
// that lives in the data directory, never in the database: a copy of the
// database alone reveals no secret.
//
// A sealed value is a version byte, a random 96-bit nonce and the
// AES-256-GCM ciphertext with its tag. The caller binds each value to its
// owner through the additional data (the access key id), so a sealed secret
// copied onto another row does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KeySize is the size of the AES-256 key, and of a key file.
const KeySize = 32

// version prefixes every sealed value so that the format can change.
const version byte = 1

// Sealer seals and opens values with AES-256-GCM. It is safe for
// concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// New returns a Sealer for a 32-byte key. The key is not retained beyond
// the cipher's own copy.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// LoadOrCreate reads the key file at path, creating it (mode 0600, with a
// new random key) when it does not exist. An existing key file that is not
// a regular file, that its group or others may access, or that does not
// hold exactly KeySize bytes is refused with an error naming the path.
func LoadOrCreate(path string) (*Sealer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		key, err := writeNewKey(f, path)
		if err != nil {
			return nil, err
		}
		return New(key)
	case errors.Is(err, os.ErrExist):
		key, err := readKey(path)
		if err != nil {
			return nil, err
		}
		return New(key)
	default:
		return nil, fmt.Errorf("seal: create key file: %w", err)
	}
}

// writeNewKey fills the freshly created f with a random key and makes it
// durable, removing the file on any failure: a lost or partial key file
// would make every sealed secret unreadable.
func writeNewKey(f *os.File, path string) (key []byte, err error) {
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("seal: generate key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		return nil, fmt.Errorf("seal: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("seal: sync key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("seal: close key file: %w", err)
	}
	// Make the new directory entry durable too.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return key, nil
}

// readKey reads an existing key file, checking the mode of the file it
// actually opened (not of whatever the path names a moment later).
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal: open key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("seal: stat key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("seal: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("seal: key file %s is accessible by group or others (mode %04o); run chmod 600 on it", path, perm)
	}
	// Read one byte more than a key to tell a long file from a good one.
	buf := make([]byte, KeySize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("seal: read key file: %w", err)
	}
	if n != KeySize {
		size := int64(n)
		if n > KeySize {
			size = fi.Size()
		}
		return nil, fmt.Errorf("seal: key file %s is damaged: want exactly %d bytes, found %d", path, KeySize, size)
	}
	return buf[:KeySize], nil
}

// Seal encrypts plaintext, binding it to additionalData (the caller passes
// the access key id, so a sealed secret cannot be moved to another key).
// Every call uses a fresh random nonce.
func (s *Sealer) Seal(plaintext, additionalData []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	out := make([]byte, 1+n, 1+n+len(plaintext)+s.aead.Overhead())
	out[0] = version
	nonce := out[1 : 1+n]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return s.aead.Seal(out, nonce, plaintext, additionalData), nil
}

// ErrOpen means a sealed value was altered, sealed under another key, or
// bound to other additional data. It deliberately does not say which.
var ErrOpen = errors.New("seal: sealed value does not open: altered, bound to another owner, or sealed with another key")

// Open decrypts a value produced by Seal with the same additionalData. Any
// failure is ErrOpen.
func (s *Sealer) Open(sealed, additionalData []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additionalData)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
