// Package agentproto is the protocol between a Postern agent and the
// server: length-prefixed JSON messages over any byte stream (a WebSocket
// in production, net.Pipe in tests), an identity handshake, reports,
// heartbeats and key pushes with acknowledgements.
package agentproto

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/postern-dev/postern/keyrecord"
)

// MaxMessage bounds one message; a peer that sends more is cut off.
const MaxMessage = 1 << 20

// Message types.
const (
	TypeChallenge = "challenge" // server → agent: prove who you are
	TypeHello     = "hello"     // agent → server: identity proof and first report
	TypeWelcome   = "welcome"   // server → agent: accepted
	TypeError     = "error"     // either way: a fatal problem, then close
	TypeReport    = "report"    // agent → server: facts about the host changed
	TypeHeartbeat = "heartbeat" // agent → server: still here
	TypePush      = "push"      // server → agent: a signed key record
	TypeAck       = "ack"       // agent → server: the push with this id is in place (or not)
)

// Envelope is one message on the wire.
type Envelope struct {
	Type string          `json:"type"`
	ID   string          `json:"id,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Decode unmarshals the body into v.
func (e Envelope) Decode(v any) error {
	if len(e.Body) == 0 {
		return fmt.Errorf("%s message has no body", e.Type)
	}
	if err := json.Unmarshal(e.Body, v); err != nil {
		return fmt.Errorf("%s message: %w", e.Type, err)
	}
	return nil
}

// Challenge asks the agent to sign Nonce.
type Challenge struct {
	Nonce      []byte    `json:"nonce"`
	ServerTime time.Time `json:"serverTime"`
}

// Hello proves the agent holds the private key registered for InstanceID.
type Hello struct {
	InstanceID string `json:"instanceId"`
	Signature  []byte `json:"signature"` // over HelloMessage(nonce, instanceID)
	Report     Report `json:"report"`
	Version    string `json:"version,omitempty"`
}

// Report carries facts about the host.
type Report struct {
	Hostname   string   `json:"hostname"`
	Platform   string   `json:"platform"`             // "Linux/UNIX"
	OS         string   `json:"os,omitempty"`         // PRETTY_NAME of os-release
	PrivateIPs []string `json:"privateIps,omitempty"` // in order of preference
	PublicIPs  []string `json:"publicIps,omitempty"`
	HostKeys   []string `json:"hostKeys,omitempty"` // "type base64" lines of sshd's host keys
	SSHPort    int      `json:"sshPort,omitempty"`
}

// Welcome accepts the agent.
type Welcome struct {
	InstanceID        string        `json:"instanceId"`
	HeartbeatInterval time.Duration `json:"heartbeatInterval"`
}

// Push delivers a signed key record.
type Push struct {
	Record keyrecord.Signed `json:"record"`
}

// Ack answers a Push; Error is empty on success.
type Ack struct {
	Error string `json:"error,omitempty"`
}

// ErrorBody explains a fatal error.
type ErrorBody struct {
	Message string `json:"message"`
}

// HelloMessage is what the agent signs to answer a challenge: the nonce
// binds it to this connection, the instance id to this identity.
func HelloMessage(nonce []byte, instanceID string) []byte {
	m := []byte("postern-agent-hello-v1\n")
	m = append(m, nonce...)
	return append(m, instanceID...)
}

// Conn sends and receives messages. Send is safe for concurrent use;
// Recv must be called from one goroutine.
type Conn struct {
	rwc io.ReadWriteCloser
	r   *bufio.Reader
	wmu sync.Mutex
}

// NewConn wraps a byte stream.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	return &Conn{rwc: rwc, r: bufio.NewReader(rwc)}
}

// Send writes one message.
func (c *Conn) Send(typ, id string, body any) error {
	env := Envelope{Type: typ, ID: id}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		env.Body = b
	}
	b, err := json.Marshal(env)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("message of %d bytes exceeds %d", len(b), MaxMessage)
	}
	frame := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(frame, uint32(len(b)))
	copy(frame[4:], b)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.rwc.Write(frame)
	return err
}

// Recv reads one message.
func (c *Conn) Recv() (Envelope, error) {
	var env Envelope
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return env, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return env, fmt.Errorf("peer sent a message of %d bytes; at most %d are allowed", n, MaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return env, err
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return env, fmt.Errorf("peer sent a malformed message: %w", err)
	}
	if env.Type == "" {
		return env, errors.New("peer sent a message without a type")
	}
	return env, nil
}

// Close closes the stream.
func (c *Conn) Close() error { return c.rwc.Close() }

// Fail sends an error message and closes the stream.
func (c *Conn) Fail(msg string) error {
	_ = c.Send(TypeError, "", ErrorBody{Message: msg})
	return c.Close()
}

// ErrIdentity means the agent could not prove the identity it claimed.
var ErrIdentity = errors.New("agent identity not proven")

// ServerHandshake challenges the agent and checks its answer. keyFor
// returns the public key registered for an instance id (an error when
// there is none). It returns the proven hello. The caller should set a
// deadline on the underlying connection.
func ServerHandshake(c *Conn, now time.Time, keyFor func(instanceID string) (ed25519.PublicKey, error)) (*Hello, error) {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	if err := c.Send(TypeChallenge, "", Challenge{Nonce: nonce, ServerTime: now}); err != nil {
		return nil, err
	}
	env, err := c.Recv()
	if err != nil {
		return nil, err
	}
	if env.Type != TypeHello {
		return nil, fmt.Errorf("expected hello, got %q", env.Type)
	}
	var h Hello
	if err := env.Decode(&h); err != nil {
		return nil, err
	}
	pub, err := keyFor(h.InstanceID)
	if err != nil {
		return &h, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, HelloMessage(nonce, h.InstanceID), h.Signature) {
		return &h, fmt.Errorf("%w: signature for %s does not verify", ErrIdentity, h.InstanceID)
	}
	return &h, nil
}

// AgentHandshake answers the server's challenge and waits for the welcome.
func AgentHandshake(c *Conn, instanceID string, key ed25519.PrivateKey, report Report, version string) (*Welcome, error) {
	env, err := c.Recv()
	if err != nil {
		return nil, err
	}
	if env.Type == TypeError {
		var e ErrorBody
		_ = env.Decode(&e)
		return nil, fmt.Errorf("server refused: %s", e.Message)
	}
	if env.Type != TypeChallenge {
		return nil, fmt.Errorf("expected challenge, got %q", env.Type)
	}
	var ch Challenge
	if err := env.Decode(&ch); err != nil {
		return nil, err
	}
	if len(ch.Nonce) < 16 {
		return nil, errors.New("server sent a short challenge")
	}
	sig := ed25519.Sign(key, HelloMessage(ch.Nonce, instanceID))
	if err := c.Send(TypeHello, "", Hello{InstanceID: instanceID, Signature: sig, Report: report, Version: version}); err != nil {
		return nil, err
	}
	env, err = c.Recv()
	if err != nil {
		return nil, err
	}
	switch env.Type {
	case TypeWelcome:
		var w Welcome
		return &w, env.Decode(&w)
	case TypeError:
		var e ErrorBody
		_ = env.Decode(&e)
		return nil, fmt.Errorf("server refused: %s", e.Message)
	}
	return nil, fmt.Errorf("expected welcome, got %q", env.Type)
}
