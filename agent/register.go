package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/postern-dev/postern/agentproto"
	"github.com/postern-dev/postern/atomicfile"
	"github.com/postern-dev/postern/authkeys"
)

// RegisterRequest is what an agent sends to register.
type RegisterRequest struct {
	ActivationID   string            `json:"activationId"`
	ActivationCode string            `json:"activationCode"`
	PublicKey      ed25519.PublicKey `json:"publicKey"`
	Report         agentproto.Report `json:"report"`
}

// RegisterResponse is the server's answer.
type RegisterResponse struct {
	InstanceID    string            `json:"instanceId"`
	KeySigningKey ed25519.PublicKey `json:"keySigningKey"`
	Region        string            `json:"region"`
	Account       string            `json:"account"`
}

// RegisterError is the server's refusal.
type RegisterError struct {
	Code    string `json:"__type"`
	Message string `json:"Message"`
}

func (e *RegisterError) Error() string { return e.Code + ": " + e.Message }

// Registration says where and how to register.
type Registration struct {
	Server         string // https://host:port, or several replicas' URLs separated by commas
	ActivationID   string
	ActivationCode string
	CABundle       string // PEM, may be empty
	StateDir       string
	HelperConfig   string // where to write the helper's pinned facts
	SocketPath     string
	Facts          Facts
}

// Register creates this host's identity (its private key never leaves the
// host), registers it with an activation and pins the server's key-signing
// key. It refuses to overwrite an existing registration.
func Register(ctx context.Context, r Registration) (*State, error) {
	if _, _, err := LoadState(r.StateDir); err == nil {
		return nil, fmt.Errorf("this host is already registered (%s); deregister it first or use another --state-dir", r.StateDir)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	hc, err := httpClient(r.CABundle)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(RegisterRequest{ActivationID: r.ActivationID, ActivationCode: r.ActivationCode, PublicKey: pub, Report: r.Facts.Collect()})
	servers := r.servers()
	if len(servers) == 0 {
		return nil, fmt.Errorf("no server URL")
	}
	// Replicas are equal: the first that answers registers the host. A
	// server that answers with a refusal is final.
	var rr *RegisterResponse
	var unreachable []error
	for _, server := range servers {
		var reached bool
		rr, reached, err = registerAt(ctx, hc, server, body)
		if reached {
			break
		}
		unreachable = append(unreachable, fmt.Errorf("%s: %w", server, err))
	}
	if rr == nil {
		if len(unreachable) == len(servers) {
			return nil, fmt.Errorf("no server answered: %w", errors.Join(unreachable...))
		}
		return nil, err
	}
	st := &State{InstanceID: rr.InstanceID, Servers: servers, Region: rr.Region,
		Account: rr.Account, KeySigningKey: rr.KeySigningKey, CABundle: r.CABundle}
	if err := SaveState(r.StateDir, st, priv); err != nil {
		return nil, err
	}
	if r.HelperConfig != "" {
		if err := WriteHelperConfig(r.HelperConfig, HelperConfig{InstanceID: st.InstanceID, KeySigningKey: st.KeySigningKey, Socket: r.SocketPath}); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// DefaultHelperConfig is where the sshd helper reads what it pins.
const DefaultHelperConfig = authkeys.DefaultConfigPath

// HelperConfig is what the sshd helper needs and may read as an
// unprivileged user: whose records to accept and where to ask. It holds no
// secret.
type HelperConfig = authkeys.Config

// WriteHelperConfig writes cfg world-readable, in a directory only root
// may change.
func WriteHelperConfig(path string, cfg HelperConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// ReadHelperConfig reads the helper's pinned facts.
func ReadHelperConfig(path string) (HelperConfig, error) {
	return authkeys.ReadConfig(path)
}

// servers returns the URLs in r.Server.
func (r Registration) servers() []string {
	var out []string
	for _, u := range strings.Split(r.Server, ",") {
		if u = strings.TrimSuffix(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// registerAt asks one server to register the host. reached is false when
// the server could not be reached (another replica may be).
func registerAt(ctx context.Context, hc *http.Client, server string, body []byte) (_ *RegisterResponse, reached bool, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+RegisterPath, bytes.NewReader(body))
	if err != nil {
		return nil, true, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode != http.StatusOK {
		var re RegisterError
		if json.Unmarshal(b, &re) == nil && re.Code != "" {
			return nil, true, &re
		}
		if resp.StatusCode >= 500 {
			return nil, false, fmt.Errorf("server answered %s", resp.Status)
		}
		return nil, true, fmt.Errorf("server answered %s", resp.Status)
	}
	var rr RegisterResponse
	if err := json.Unmarshal(b, &rr); err != nil || rr.InstanceID == "" || len(rr.KeySigningKey) != ed25519.PublicKeySize {
		return nil, true, fmt.Errorf("server answered an unusable registration")
	}
	return &rr, true, nil
}
