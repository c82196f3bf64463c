package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/agentproto"
)

// ConnectPath is the server's WebSocket endpoint for agents, and
// Subprotocol the WebSocket subprotocol both sides require.
const (
	ConnectPath  = "/agent/v1/connect"
	RegisterPath = "/agent/v1/register"
	Subprotocol  = "postern-agent.v1"
)

// Version is reported to the server.
const Version = "1"

// Config configures a running agent.
type Config struct {
	StateDir   string
	SocketPath string
	HelperUID  int // uid allowed to query the socket besides root; -1 for none
	HelperGID  int // group given the socket; -1 to leave it
	Facts      Facts
	Logger     *slog.Logger
	// MaxBackoff caps the wait between reconnection attempts.
	MaxBackoff time.Duration
}

// Agent is a registered agent, ready to run.
type Agent struct {
	cfg   Config
	state *State
	priv  ed25519.PrivateKey
	keys  *keyStore
	log   *slog.Logger
	http  *http.Client
	now   func() time.Time
}

// New loads the agent's identity from cfg.StateDir.
func New(cfg Config) (*Agent, error) {
	st, priv, err := LoadState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = time.Minute
	}
	hc, err := httpClient(st.CABundle)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, state: st, priv: priv, log: cfg.Logger, http: hc, now: time.Now}
	a.keys = newKeyStore(st.InstanceID, st.KeySigningKey, func() time.Time { return a.now() })
	return a, nil
}

// InstanceID is the agent's instance id.
func (a *Agent) InstanceID() string { return a.state.InstanceID }

// httpClient trusts caPEM in addition to the system roots.
func httpClient(caPEM string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caPEM != "" && !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("the CA bundle holds no certificate")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}

// Run serves the helper socket and keeps a connection to a server until
// ctx is done, reconnecting with jittered exponential backoff.
func (a *Agent) Run(ctx context.Context) error {
	sock := &socketServer{path: a.cfg.SocketPath, helperUID: a.cfg.HelperUID, helperGID: a.cfg.HelperGID, keys: a.keys, log: a.log}
	l, err := sock.listen()
	if err != nil {
		return fmt.Errorf("helper socket %s: %w", a.cfg.SocketPath, err)
	}
	sockDone := make(chan error, 1)
	go func() { sockDone <- sock.serve(ctx, l) }()

	backoff := time.Second
	server := 0
	for ctx.Err() == nil {
		url := a.state.Servers[server%len(a.state.Servers)]
		start := a.now()
		err := a.session(ctx, url)
		if ctx.Err() != nil {
			break
		}
		if a.now().Sub(start) > time.Minute {
			backoff = time.Second // the last session was healthy
		}
		// Full jitter keeps a fleet from reconnecting in lockstep after a
		// server restart.
		wait := time.Duration(rand.Int64N(int64(backoff))) + 100*time.Millisecond
		a.log.Warn("connection to server lost; reconnecting", "server", url, "err", err, "in", wait.Round(time.Millisecond))
		server++
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(2*backoff, a.cfg.MaxBackoff)
	}
	<-sockDone
	return nil
}

// session runs one connection: handshake, then heartbeats out and pushes
// in, until something breaks.
func (a *Agent) session(ctx context.Context, serverURL string) error {
	wsURL := "wss://" + strings.TrimPrefix(strings.TrimPrefix(serverURL, "https://"), "wss://") + ConnectPath
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: a.http, Subprotocols: []string{Subprotocol}})
	cancel()
	if err != nil {
		return err
	}
	c.SetReadLimit(agentproto.MaxMessage + 4)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	conn := agentproto.NewConn(websocket.NetConn(sctx, c, websocket.MessageBinary))
	defer conn.Close()
	report := a.cfg.Facts.Collect()
	welcome, err := agentproto.AgentHandshake(conn, a.state.InstanceID, a.priv, report, Version)
	if err != nil {
		return err
	}
	a.log.Info("connected to server", "server", serverURL, "instance", welcome.InstanceID)
	interval := welcome.HeartbeatInterval
	if interval <= 0 {
		interval = 20 * time.Second
	}
	errc := make(chan error, 1)
	go func() { errc <- a.heartbeats(sctx, conn, interval, report) }()
	go func() { errc <- a.receive(conn) }()
	err = <-errc
	stop()
	return err
}

// heartbeats sends a heartbeat every interval and a fresh report when the
// host's facts change (an address moved, host keys were regenerated).
func (a *Agent) heartbeats(ctx context.Context, conn *agentproto.Conn, interval time.Duration, last agentproto.Report) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if r := a.cfg.Facts.Collect(); !sameReport(r, last) {
			if err := conn.Send(agentproto.TypeReport, "", r); err != nil {
				return err
			}
			last = r
		}
		if err := conn.Send(agentproto.TypeHeartbeat, "", nil); err != nil {
			return err
		}
	}
}

func sameReport(a, b agentproto.Report) bool {
	return a.Hostname == b.Hostname && a.OS == b.OS && a.SSHPort == b.SSHPort &&
		strings.Join(a.PrivateIPs, ",") == strings.Join(b.PrivateIPs, ",") &&
		strings.Join(a.PublicIPs, ",") == strings.Join(b.PublicIPs, ",") &&
		strings.Join(a.HostKeys, ",") == strings.Join(b.HostKeys, ",")
}

// receive handles pushes until the connection ends.
func (a *Agent) receive(conn *agentproto.Conn) error {
	for {
		env, err := conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("server closed the connection")
			}
			return err
		}
		switch env.Type {
		case agentproto.TypePush:
			var p agentproto.Push
			ack := agentproto.Ack{}
			if err := env.Decode(&p); err != nil {
				ack.Error = err.Error()
			} else if rec, err := a.keys.add(p.Record); err != nil {
				ack.Error = err.Error()
				a.log.Warn("refused a pushed key", "err", err)
			} else {
				a.log.Info("key pushed", "user", rec.OSUser, "fingerprint", rec.Fingerprint, "request_id", rec.RequestID, "expires", rec.ExpiresAt)
			}
			if err := conn.Send(agentproto.TypeAck, env.ID, ack); err != nil {
				return err
			}
		case agentproto.TypeError:
			var e agentproto.ErrorBody
			_ = env.Decode(&e)
			return fmt.Errorf("server: %s", e.Message)
		}
	}
}
