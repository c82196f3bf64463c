package devsshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/atomicfile"
)

// HostKeyFile is the private host key's name in Config.HostKeyDir; the
// public key is beside it with ".pub".
const HostKeyFile = "ssh_host_ed25519_key"

// LoadOrCreateHostKey reads dir/ssh_host_ed25519_key (OpenSSH format, as
// ssh-keygen writes it), or creates it, 0600, when absent. Either way
// the .pub beside it is (re)written to match.
func LoadOrCreateHostKey(dir string) (ssh.Signer, error) {
	path := filepath.Join(dir, HostKeyFile)
	var signer ssh.Signer
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if signer, err = ssh.ParsePrivateKey(b); err != nil {
			return nil, fmt.Errorf("devsshd: host key %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		block, err := ssh.MarshalPrivateKey(priv, "postern devsshd")
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
		if signer, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	if old, err := os.ReadFile(path + ".pub"); err == nil && sameKey(old, pub) {
		return signer, nil
	}
	if err := atomicfile.Write(path+".pub", pub, 0o644); err != nil {
		return nil, err
	}
	return signer, nil
}

// sameKey reports whether two authorized_keys lines hold the same key,
// whatever their comments.
func sameKey(a, b []byte) bool {
	ka, _, _, _, errA := ssh.ParseAuthorizedKey(a)
	kb, _, _, _, errB := ssh.ParseAuthorizedKey(b)
	return errA == nil && errB == nil && string(ka.Marshal()) == string(kb.Marshal())
}
