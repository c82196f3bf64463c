// Package authkeys is sshd's AuthorizedKeysCommand helper: it asks the
// agent's socket for a user's signed key records, verifies them against
// the pinned facts, and prints the key lines sshd may accept.
//
// sshd runs the helper on every login attempt, so this package stays
// light: the standard library, keyrecord and sshkey only. Both
// `postern authorized-keys` and the slim postern-authorized-keys binary
// run it.
package authkeys

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
)

// DefaultConfigPath is where the helper reads what it pins.
const DefaultConfigPath = "/etc/postern/helper.json"

// DefaultSocket is where the agent answers the helper.
const DefaultSocket = "/run/postern/agent.sock"

// Config is what the helper needs and may read as an unprivileged user:
// whose records to accept and where to ask. It holds no secret.
type Config struct {
	InstanceID    string            `json:"instanceId"`
	KeySigningKey ed25519.PublicKey `json:"keySigningKey"`
	Socket        string            `json:"socket"`
}

// ReadConfig reads the helper's pinned facts.
func ReadConfig(path string) (Config, error) {
	var cfg Config
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, err
	}
	if cfg.InstanceID == "" || len(cfg.KeySigningKey) != ed25519.PublicKeySize || cfg.Socket == "" {
		return cfg, fmt.Errorf("%s is incomplete", path)
	}
	return cfg, nil
}
