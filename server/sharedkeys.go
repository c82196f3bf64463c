package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/atomicfile"
	"github.com/postern-dev/postern/keyfile"
	"github.com/postern-dev/postern/pki"
	"github.com/postern-dev/postern/seal"
)

// The keys every replica must share: agents pin the key-signing key,
// verifiers the audit key, and clients, agents and endpoints trust the CA.
// With a shared store each is kept in the database too, sealed with the
// secrets key, so a new replica needs only secrets.key copied from an
// existing one: it fetches the rest at start. Each replica issues its own
// server certificate from the shared CA.
var sharedKeyFiles = []struct {
	name string
	mode os.FileMode
}{
	{kskFile, 0o600}, {auditKeyFile, 0o600}, {pki.CAFile, 0o644}, {pki.CAKeyFile, 0o600},
}

func sharedKeyMeta(name string) string { return "sealed-file:" + name }

// errSecretsKeyDiffers is the answer when this replica's secrets.key
// cannot open what the others stored.
var errSecretsKeyDiffers = errors.New("this replica's " + sealKeyFile + " is not the one the other replicas use: copy " + sealKeyFile + " from an existing replica's data directory (and nothing else)")

// shareKeyFiles makes the data directory's shared keys those of the
// cluster: it writes the keys the database holds over local ones, creates
// what neither has, and stores what the database lacks. Two replicas that
// start together on a new database race fairly: the first to store a key
// wins and the other takes it.
func (s *Server) shareKeyFiles(ctx context.Context, sealer *seal.Sealer) error {
	caChanged, err := s.pullKeyFiles(ctx, sealer)
	if err != nil {
		return err
	}
	// Create what is still missing, as a single server would.
	for _, f := range []string{kskFile, auditKeyFile} {
		if _, err := keyfile.LoadOrCreateEd25519(filepath.Join(s.cfg.DataDir, f)); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	if err := pki.EnsureCA(s.cfg.DataDir, time.Now()); err != nil {
		return err
	}
	lost := false
	for _, f := range sharedKeyFiles {
		local, err := os.ReadFile(filepath.Join(s.cfg.DataDir, f.name))
		if err != nil {
			return err
		}
		sealed, err := sealer.Seal(local, []byte(sharedKeyMeta(f.name)))
		if err != nil {
			return err
		}
		enc := base64.StdEncoding.EncodeToString(sealed)
		stored, err := s.store.PutMetaIfAbsent(ctx, sharedKeyMeta(f.name), enc)
		if err != nil {
			return fmt.Errorf("store the shared %s: %w", f.name, err)
		}
		lost = lost || stored != enc
	}
	if lost {
		// Another replica stored its keys first: take them.
		changed, err := s.pullKeyFiles(ctx, sealer)
		if err != nil {
			return err
		}
		caChanged = caChanged || changed
	}
	if caChanged {
		// A server certificate issued by another CA would not be trusted.
		for _, f := range []string{pki.CertFile, pki.KeyFile} {
			if err := os.Remove(filepath.Join(s.cfg.DataDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// pullKeyFiles writes the shared keys the database holds into the data
// directory and reports whether the CA changed.
func (s *Server) pullKeyFiles(ctx context.Context, sealer *seal.Sealer) (caChanged bool, err error) {
	for _, f := range sharedKeyFiles {
		enc, err := s.store.GetMeta(ctx, sharedKeyMeta(f.name))
		if postern.IsKind(err, postern.KindNotFound) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("read the shared %s: %w", f.name, err)
		}
		sealed, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return false, fmt.Errorf("the shared %s is damaged: %w", f.name, err)
		}
		content, err := sealer.Open(sealed, []byte(sharedKeyMeta(f.name)))
		if err != nil {
			return false, errSecretsKeyDiffers
		}
		path := filepath.Join(s.cfg.DataDir, f.name)
		if local, err := os.ReadFile(path); err == nil && bytes.Equal(local, content) {
			continue
		}
		if err := atomicfile.Write(path, content, f.mode); err != nil {
			return false, err
		}
		if f.name == pki.CAFile {
			caChanged = true
		}
		s.log.Info("took a shared key from the cluster", "file", f.name)
	}
	return caChanged, nil
}
