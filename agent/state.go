// Package agent is the Postern agent that runs on every managed server: it
// registers with an activation, keeps one outbound connection to the
// server, reports the host's facts, receives signed key records and serves
// them to the sshd helper over a unix socket.
package agent

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/postern-dev/postern/atomicfile"
)

// DefaultStateDir is where the agent keeps its identity.
const DefaultStateDir = "/var/lib/postern"

// State is the agent's identity, kept in StateDir/agent.json (0600) beside
// its private key in StateDir/agent.key (0600).
type State struct {
	InstanceID string   `json:"instanceId"`
	Servers    []string `json:"servers"` // server URLs, tried in order
	Region     string   `json:"region"`
	Account    string   `json:"account"`
	// KeySigningKey is the server's public key for key records, pinned at
	// registration: records signed by anything else are refused.
	KeySigningKey ed25519.PublicKey `json:"keySigningKey"`
	CABundle      string            `json:"caBundle,omitempty"` // PEM, inline
}

const (
	stateFile = "agent.json"
	keyFile   = "agent.key"
)

// ErrNotRegistered means the state directory holds no identity.
var ErrNotRegistered = errors.New("this host is not registered; run 'postern agent register' first")

// LoadState reads the identity from dir.
func LoadState(dir string) (*State, ed25519.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, ErrNotRegistered
	}
	if err != nil {
		return nil, nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, stateFile), err)
	}
	if len(s.KeySigningKey) != ed25519.PublicKeySize || s.InstanceID == "" || len(s.Servers) == 0 {
		return nil, nil, fmt.Errorf("%s is incomplete; register again", filepath.Join(dir, stateFile))
	}
	kb, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s holds no PEM key", filepath.Join(dir, keyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%s is not an Ed25519 key", filepath.Join(dir, keyFile))
	}
	return &s, priv, nil
}

// SaveState writes the identity to dir, creating it with mode 0700.
func SaveState(dir string, s *State, priv ed25519.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, stateFile), append(b, '\n'), 0o600)
}
