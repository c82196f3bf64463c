// Package consoleterm serves the web console's terminal: a WebSocket that
// pushes an ephemeral key as the signed-in user (through the same
// SendSSHPublicKey path as the API, so policy and audit apply), reaches
// the instance as postern ssh would (its public address directly; else its
// private address through an Instance Connect Endpoint of its VPC, opened
// as the user, or directly when the VPC has none), logs in over SSH,
// verifying its host key against the keys its agent reported, and bridges
// a PTY shell to the browser, recording every session.
package consoleterm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/console"
	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/valid"
)

// Path is the terminal's WebSocket:
// GET Path?instanceId=i-…&osUser=…&cols=N&rows=M.
const Path = console.Prefix + "/api/terminal"

// Defaults of Config.
const (
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	// MaxInputFrame is the largest binary frame the browser may send; a
	// longer paste is sent in several frames.
	MaxInputFrame = 1 << 20
)

// KeyPusher pushes a public key as a console user; *api.Server is one.
type KeyPusher interface {
	PushKeyAs(ctx context.Context, p *authority.Principal, env authority.Env, instanceID, osUser, publicKey string) (requestID string, err error)
}

// TunnelOpener opens tunnels through Instance Connect Endpoints as a
// console user: each is an OpenTunnel call of the user, under the user's
// policies and the endpoint's limits, audited in the user's name. The
// server implements it. A refusal is an *endpointproto.TunnelError;
// tunnelID is the OpenTunnel audit record's request id.
type TunnelOpener interface {
	OpenTunnelAs(ctx context.Context, p *authority.Principal, env authority.Env, ep *postern.Endpoint, target string, port int) (conn tunnel.MessageConn, tunnelID string, err error)
}

// Sessions signs console users in; *console.Server is one.
type Sessions interface {
	Authenticate(r *http.Request) (*console.Principal, error)
	RequireSameOrigin(r *http.Request) error
}

// RecordingMeta describes a session being recorded (the fields of
// recording.Meta, in its order); an empty ID lets the recorder name it.
type RecordingMeta struct {
	ID, User, UserARN, InstanceID, OSUser, SourceIP string
	Cols, Rows                                      int
	Started                                         time.Time
}

// Recording is one session's recording; *recording.Session is one.
type Recording interface {
	ID() string
	Output(p []byte) error
	Input(p []byte) error
	Resize(cols, rows int) error
	Close(ctx context.Context) error
}

// StartRecording starts a session's recording.
type StartRecording func(ctx context.Context, m RecordingMeta) (Recording, error)

// Config wires a Server.
type Config struct {
	Authority *authority.Authority
	Trail     *audit.Trail
	Sessions  Sessions
	Pusher    KeyPusher
	// Record starts every session's recording; without it no terminal
	// opens, since no session runs unrecorded.
	Record StartRecording
	Logger *slog.Logger
	// KeepAlive is how often both sides are pinged; three unanswered
	// SSH keepalives in a row end the session as lost.
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	// Dial connects to instances directly; nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Tunnels reaches instances through Instance Connect Endpoints; nil:
	// instances that need one cannot be reached.
	Tunnels TunnelOpener
	// AllowLoopback lets the console dial an instance that reports a
	// loopback address. Only `postern dev` sets it, whose demo instance
	// lives on the server's own host; elsewhere an agent reporting
	// 127.0.0.1 must not make the server connect to itself.
	AllowLoopback bool
}

// Server serves the terminal WebSocket.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: cfg.KeepAlive}
		cfg.Dial = d.DialContext
	}
	return &Server{cfg: cfg, log: cfg.Logger}
}

// request is what the WebSocket URL asks for.
type request struct {
	InstanceID, OSUser string
	Cols, Rows         int
}

func parseRequest(r *http.Request) (request, error) {
	q := r.URL.Query()
	req := request{InstanceID: q.Get("instanceId"), OSUser: q.Get("osUser"), Cols: 80, Rows: 24}
	invalid := func(format string, args ...any) error {
		return postern.CodedErrorf(postern.KindInvalid, "InvalidRequest", format, args...)
	}
	if !valid.HexID(req.InstanceID, "i-", 8, 30) {
		return req, invalid("instanceId %q is not an instance id (i- followed by hexadecimal digits)", truncate(req.InstanceID, 40))
	}
	if !valid.OSUser(req.OSUser) {
		return req, invalid("osUser %q is not a valid Linux user name", truncate(req.OSUser, 40))
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"cols", &req.Cols}, {"rows", &req.Rows}} {
		if s := q.Get(f.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return req, invalid("%s must be a number", f.name)
			}
			*f.v = n
		}
	}
	if err := checkSize(req.Cols, req.Rows); err != nil {
		return req, invalid("%v", err)
	}
	return req, nil
}

// ServeHTTP opens one terminal. Before the upgrade: a cross-site request
// is refused 403 (and audited), no session 401, a bad query 400. After
// it, failures arrive as an Error message and a close.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if err := s.cfg.Sessions.RequireSameOrigin(r); err != nil {
		console.WriteError(w, err)
		return
	}
	p, err := s.cfg.Sessions.Authenticate(r)
	if err != nil {
		console.WriteError(w, err)
		return
	}
	req, err := parseRequest(r)
	if err != nil {
		console.WriteError(w, err)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept answered the request
	}
	ws.SetReadLimit(MaxInputFrame)
	t := &terminal{
		s: s, ws: ws, req: req, principal: p.Principal,
		sourceIP: console.SourceIP(r), userAgent: truncate(r.UserAgent(), 512), start: time.Now(),
	}
	t.run(r.Context())
}

// failure is why a session could not start or ended badly: the code and
// message the browser is shown, and the WebSocket close code.
type failure struct {
	code, message string
	action        string // the policy action refused, for AccessDenied
	close         websocket.StatusCode
	audited       bool // already in the trail (a refused key push)
}

func (f *failure) Error() string { return f.code + ": " + f.message }

// pushFailure turns a refused or failed key push into what the browser
// is shown.
func pushFailure(err error) *failure {
	var e *postern.Error
	if !errors.As(err, &e) || e.Kind == postern.KindInternal || e.Kind == postern.KindOther {
		return &failure{code: "InternalError", message: "The key could not be pushed; the server log has the details.", close: websocket.StatusInternalError, audited: true}
	}
	f := &failure{code: e.Code, message: e.Message, close: websocket.StatusPolicyViolation, audited: true}
	switch e.Kind {
	case postern.KindDenied:
		f.code, f.action = "AccessDenied", "ec2-instance-connect:SendSSHPublicKey"
	case postern.KindUnavailable, postern.KindThrottled:
		f.close = websocket.StatusTryAgainLater
	}
	if f.code == "" {
		f.code = e.Kind.String()
	}
	return f
}

// newKey returns an ephemeral Ed25519 key: memory only, one session.
func newKey() (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	return signer, string(ssh.MarshalAuthorizedKey(signer.PublicKey())), nil
}
