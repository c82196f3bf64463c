// Package server assembles a Postern control plane: store, keys, TLS, the
// AWS-compatible API, health and metrics endpoints, audit digests, and a
// graceful shutdown.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/agenthub"
	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/atomicfile"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/cluster"
	"github.com/postern-dev/postern/console"
	"github.com/postern-dev/postern/consoleterm"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/keyfile"
	"github.com/postern-dev/postern/metrics"
	"github.com/postern-dev/postern/pki"
	"github.com/postern-dev/postern/recording"
	"github.com/postern-dev/postern/seal"
	"github.com/postern-dev/postern/web"
)

// Files in the data directory.
const (
	CredentialsFile = "admin.credentials" // AWS shared-credentials format
	InfoFile        = "server.json"       // how clients reach this server
	dbFile          = "postern.db"
	sealKeyFile     = "secrets.key"
	auditKeyFile    = "audit.key"
	auditDigestFile = "audit-digest.json" // the newest digest this server signed, kept outside the store
	kskFile         = "keysigning.key"    // signs key records; agents pin its public half
	AuditPubFile    = "audit.pub"
	// CredentialsProfile is the profile name in CredentialsFile.
	CredentialsProfile = "postern-admin"
)

// Config is a server's configuration; the command layer fills it from
// flags and a config file and validates it.
type Config struct {
	Listen         string   // host:port
	DataDir        string   //
	Region         string   //
	Store          string   // "sqlite" or a postgres:// URL
	TLSCert        string   // optional PEM files; default: own CA
	TLSKey         string   //
	Hosts          []string // extra names for the generated certificate
	Throttle       api.ThrottleConfig
	DigestInterval time.Duration // how often audit digests are signed
	ShutdownGrace  time.Duration // how long in-flight requests may finish
	// Console holds the web console's session lifetimes and sign-in
	// limits (zero values: the console package's defaults).
	Console ConsoleConfig
	// DrainDelay keeps serving after SIGTERM with /readyz failing, so that a
	// load balancer stops sending new requests before the listener closes.
	DrainDelay time.Duration

	KeyLifetime       time.Duration // how long a pushed SSH key lives (60 s)
	PushTimeout       time.Duration // how long a push waits for the agent (10 s)
	HeartbeatInterval time.Duration // how often agents report in (20 s)
	AgentTimeout      time.Duration // silence after which an instance is stopped (90 s)

	// ReplicaName labels this server's metrics (default: the host name).
	ReplicaName string
	// AdvertiseURL is where endpoint processes reach this replica itself
	// (not a load balancer in front of several), to dial back relayed
	// tunnels whose client reached it; default: the URL it listens on.
	AdvertiseURL string

	// ConsoleDialLoopback lets console terminals reach instances at a
	// loopback address: for `postern dev` only, whose demo instance runs on
	// this host.
	ConsoleDialLoopback bool
}

// ConsoleConfig tunes console sign-in.
type ConsoleConfig struct {
	IdleTimeout time.Duration
	Lifetime    time.Duration
	Limits      console.Limits
}

// Defaults of the agent-related settings.
const (
	DefaultKeyLifetime       = 60 * time.Second
	DefaultPushTimeout       = 10 * time.Second
	DefaultHeartbeatInterval = 20 * time.Second
	DefaultAgentTimeout      = 90 * time.Second
)

// replicaName is ReplicaName, else the host name.
func (c *Config) replicaName() string {
	if c.ReplicaName != "" {
		return c.ReplicaName
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "postern"
}

// setDefaults fills zero durations so that a Config built in code works.
func (c *Config) setDefaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.KeyLifetime, DefaultKeyLifetime}, {&c.PushTimeout, DefaultPushTimeout},
		{&c.HeartbeatInterval, DefaultHeartbeatInterval}, {&c.AgentTimeout, DefaultAgentTimeout},
		{&c.DigestInterval, time.Minute}, {&c.ShutdownGrace, 30 * time.Second},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	// A connected agent must be heard from well within the agent timeout,
	// or a short --agent-timeout marks live instances stopped.
	c.HeartbeatInterval = min(c.HeartbeatInterval, c.AgentTimeout/3)
}

// Info is what InfoFile holds: enough for `postern env` to point clients
// at this server.
type Info struct {
	URL      string `json:"url"`
	Region   string `json:"region"`
	Account  string `json:"account"`
	CABundle string `json:"caBundle,omitempty"`
}

// Server is a running control plane.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    postern.Store
	auth     *authority.Authority
	trail    *audit.Trail
	http     *http.Server
	listener net.Listener
	info     Info
	draining atomic.Bool
	ksk      ed25519.PrivateKey
	hub      *agenthub.Hub
	// cluster routes key pushes to the replica that holds an agent's
	// session (PostgreSQL store only; nil otherwise).
	cluster *cluster.Cluster
	api     *api.Server
	// console signs users in to the web console.
	console *console.Server
	// recorder records console terminal sessions under the data dir.
	recorder *recording.Recorder
	// endpoints holds the control sessions of Instance Connect Endpoint
	// processes.
	endpoints *endpointHub
	// baseCtx lives as long as the server; agent sessions hang off it
	// rather than off their HTTP request.
	baseCtx    context.Context
	cancelBase context.CancelFunc
}

// Open prepares a server: data directory, store, keys, admin user, TLS and
// listener. Messages for the operator go to out.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, out func(string)) (_ *Server, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	cfg.setDefaults()
	s := &Server{cfg: cfg, log: logger}
	defer func() {
		if err != nil && s.store != nil {
			s.store.Close()
		}
	}()
	if s.store, err = s.openStore(ctx); err != nil {
		return nil, err
	}
	sealer, err := seal.LoadOrCreate(filepath.Join(cfg.DataDir, sealKeyFile))
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	if IsPostgresURL(cfg.Store) {
		if err := s.shareKeyFiles(ctx, sealer); err != nil {
			return nil, err
		}
	}
	account, err := s.store.PutMetaIfAbsent(ctx, "account_id", newAccountID())
	if err != nil {
		return nil, fmt.Errorf("account id: %w", err)
	}
	auditKey, err := keyfile.LoadOrCreateEd25519(filepath.Join(cfg.DataDir, auditKeyFile))
	if err != nil {
		return nil, fmt.Errorf("audit signing key: %w", err)
	}
	auditPub := auditKey.Public().(ed25519.PublicKey)
	if err := keyfile.WritePublic(filepath.Join(cfg.DataDir, AuditPubFile), auditPub); err != nil {
		return nil, fmt.Errorf("audit public key: %w", err)
	}
	s.auth = authority.New(authority.Config{Region: cfg.Region, Account: account}, s.store, sealer, logger)
	s.trail = audit.NewTrail(s.store, auditKey, logger)
	s.trail.KeepNewestDigest(filepath.Join(cfg.DataDir, auditDigestFile))
	if s.ksk, err = keyfile.LoadOrCreateEd25519(filepath.Join(cfg.DataDir, kskFile)); err != nil {
		return nil, fmt.Errorf("key-signing key: %w", err)
	}
	s.baseCtx, s.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	s.hub = s.newHub()
	s.endpoints = newEndpointHub()
	var pusher api.KeyPusher = s.hub
	if IsPostgresURL(cfg.Store) {
		if s.cluster, err = s.joinCluster(); err != nil {
			return nil, err
		}
		pusher = s.cluster
	}

	if err := s.bootstrapAdmin(ctx, out); err != nil {
		return nil, err
	}

	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	tlsCfg, caBundle, err := s.tlsConfig(host)
	if err != nil {
		return nil, err
	}
	s.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	if port == "0" {
		_, port, _ = net.SplitHostPort(s.listener.Addr().String())
	}
	s.info = Info{URL: "https://" + net.JoinHostPort(clientHost(host), port), Region: cfg.Region, Account: account, CABundle: caBundle}
	if err := writeJSONFile(filepath.Join(cfg.DataDir, InfoFile), s.info, 0o644); err != nil {
		s.listener.Close()
		return nil, err
	}

	// Every series carries the replica's name, so that a dashboard over
	// several replicas can tell them apart or sum them.
	reg := metrics.NewRegistry("replica", cfg.replicaName())
	reg.AddProcess()
	s.recorder = recording.New(filepath.Join(cfg.DataDir, recording.DirName), s.store)
	s.api = api.New(api.Config{
		Authority: s.auth, Trail: s.trail, AuditKey: auditPub, Logger: logger,
		Metrics: api.NewMetrics(reg), Throttle: cfg.Throttle,
		KeyPush:    api.KeyPush{Pusher: pusher, Signer: s.ksk, Lifetime: cfg.KeyLifetime, Timeout: cfg.PushTimeout},
		Recordings: s.recorder,
	})
	mux := http.NewServeMux()
	s.auth.OnEndpointChange(s.onEndpointChange)
	mux.Handle("/", s.api)
	s.console = console.New(console.Config{
		Authority: s.auth, Trail: s.trail, Logger: logger,
		IdleTimeout: cfg.Console.IdleTimeout, Lifetime: cfg.Console.Lifetime, Limits: cfg.Console.Limits,
	})
	mux.Handle(console.Prefix+"/api/", s.console.Handler())
	mux.Handle(console.AWSPath, s.console.AWSHandler(s.api))
	mux.Handle(console.Prefix+"/", console.Pages(web.FS()))
	mux.Handle("GET "+consoleterm.Path, consoleterm.New(consoleterm.Config{
		Authority: s.auth, Trail: s.trail, Sessions: s.console, Pusher: s.api, Logger: logger,
		Tunnels: s.newConsoleTunnels(), AllowLoopback: cfg.ConsoleDialLoopback,
		Record: func(ctx context.Context, m consoleterm.RecordingMeta) (consoleterm.Recording, error) {
			rs, err := s.recorder.Start(ctx, recording.Meta(m))
			if err != nil {
				return nil, err
			}
			return rs, nil
		},
	}))
	mux.HandleFunc("POST "+endpointproto.JoinPath, s.handleEndpointJoin)
	mux.HandleFunc("GET "+endpointproto.ControlPath, s.handleEndpointControl)
	mux.HandleFunc("POST "+endpointproto.AuthorizePath, s.handleEndpointAuthorize)
	mux.HandleFunc("POST "+endpointproto.ClosedPath, s.handleEndpointClosed)
	mux.HandleFunc("GET "+endpointproto.RelayPath, s.handleEndpointRelay)
	mux.HandleFunc("GET "+endpointproto.OpenTunnelPath, s.handleOpenTunnel)
	mux.HandleFunc("POST "+agent.RegisterPath, s.handleRegister)
	mux.HandleFunc("GET "+agent.ConnectPath, s.handleConnect)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", reg)
	s.http = &http.Server{
		Handler:           mux,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// advertiseURL is where endpoint processes reach this replica itself.
func (s *Server) advertiseURL() string {
	if s.cfg.AdvertiseURL != "" {
		return strings.TrimRight(s.cfg.AdvertiseURL, "/")
	}
	return s.info.URL
}

// Info returns how clients reach the server.
func (s *Server) Info() Info { return s.info }

// Recorder returns the recorder of console terminal sessions.
func (s *Server) Recorder() *recording.Recorder { return s.recorder }

// Serve answers requests until ctx is done, then drains: /readyz turns
// false, no new connections are accepted, and in-flight requests get up to
// ShutdownGrace to finish. A final audit digest is signed before the store
// closes.
func (s *Server) Serve(ctx context.Context) error {
	digestCtx, stopDigests := context.WithCancel(context.WithoutCancel(ctx))
	digestsDone := make(chan struct{})
	go func() {
		defer close(digestsDone)
		s.trail.RunDigests(digestCtx, s.cfg.DigestInterval)
	}()
	go s.reapSilentAgents(digestCtx)
	heartbeatDone := make(chan struct{})
	go func() {
		defer close(heartbeatDone)
		if s.cluster != nil {
			s.cluster.Heartbeat(digestCtx, func(n int) {
				s.log.Info("replicas serving", "count", n)
				s.api.SetReplicas(n)
			})
		}
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.ServeTLS(s.listener, "", "") }()
	s.log.Info("serving", "url", s.info.URL, "region", s.info.Region, "account", s.info.Account)

	var err error
	select {
	case err = <-serveErr:
	case <-ctx.Done():
		err = s.drain(serveErr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.cancelBase() // ends agent sessions, which Shutdown does not wait for
	stopDigests()
	<-digestsDone
	<-heartbeatDone
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	s.log.Info("stopped")
	return err
}

// drain fails /readyz, keeps serving for DrainDelay, then shuts the HTTP
// server down, giving in-flight requests ShutdownGrace to finish.
func (s *Server) drain(serveErr <-chan error) error {
	s.draining.Store(true)
	if s.cfg.DrainDelay > 0 {
		s.log.Info("draining: /readyz fails; still serving", "for", s.cfg.DrainDelay)
		select {
		case <-time.After(s.cfg.DrainDelay):
		case err := <-serveErr:
			return err // the listener failed meanwhile: nothing left to drain
		}
	}
	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	err := s.http.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.http.Close()
		err = fmt.Errorf("in-flight requests did not finish within %s", s.cfg.ShutdownGrace)
	}
	return err
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// bootstrapAdmin creates the admin user on first start, writes its key to
// the credentials file and audits the creation.
func (s *Server) bootstrapAdmin(ctx context.Context, out func(string)) error {
	key, secret, err := s.auth.EnsureAdmin(ctx)
	if err != nil || key == nil {
		return err
	}
	path := filepath.Join(s.cfg.DataDir, CredentialsFile)
	content := fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n",
		CredentialsProfile, key.ID, secret, s.cfg.Region)
	if err := atomicfile.Write(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = s.trail.Record(ctx, &audit.Event{
		EventSource: "iam.amazonaws.com", EventName: "CreateUser", AWSRegion: s.cfg.Region,
		SourceIPAddress:   "postern.internal",
		UserIdentity:      audit.UserIdentity{Type: "AWSService", PrincipalID: "postern-bootstrap"},
		RequestParameters: map[string]any{"userName": "admin", "policyName": authority.AdminPolicyName},
		ResponseElements:  map[string]any{"accessKeyId": key.ID},
		RequestID:         "bootstrap", EventType: "AwsServiceEvent", RecipientAccountID: s.auth.Config().Account,
		Resources: []audit.Resource{{ARN: s.auth.UserARN("admin"), AccountID: s.auth.Config().Account, Type: "AWS::IAM::User"}},
	})
	if err != nil {
		return fmt.Errorf("audit the admin bootstrap: %w", err)
	}
	out(fmt.Sprintf("Created the admin user; its access key is in %s (profile %s).\nPoint AWS tools at this server with:  eval \"$(postern env --data-dir %s)\"", path, CredentialsProfile, s.cfg.DataDir))
	return nil
}

func (s *Server) tlsConfig(host string) (*tls.Config, string, error) {
	var cert tls.Certificate
	var caBundle string
	var err error
	if s.cfg.TLSCert != "" {
		cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return nil, "", fmt.Errorf("load TLS certificate: %w", err)
		}
	} else {
		hosts := []string{"localhost", "127.0.0.1"}
		if host != "" && host != "0.0.0.0" && host != "::" && host != "localhost" && host != "127.0.0.1" {
			hosts = append([]string{host}, hosts...)
		}
		hosts = append(hosts, s.cfg.Hosts...)
		cert, caBundle, err = pki.EnsureServerCert(s.cfg.DataDir, hosts, time.Now())
		if err != nil {
			return nil, "", fmt.Errorf("TLS certificate: %w", err)
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, caBundle, nil
}

// clientHost is the host clients should dial for a listen host.
func clientHost(host string) string {
	switch host {
	case "", "0.0.0.0", "::":
		return "127.0.0.1"
	}
	return host
}

// newAccountID returns 12 random decimal digits, not starting with 0.
func newAccountID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(9e11))
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%012d", n.Int64()+1e11)
}

// ReadInfo reads InfoFile from a data directory.
func ReadInfo(dataDir string) (Info, error) {
	var info Info
	b, err := os.ReadFile(filepath.Join(dataDir, InfoFile))
	if err != nil {
		return info, fmt.Errorf("%w (has a server been started with --data-dir %s?)", err, dataDir)
	}
	return info, json.Unmarshal(b, &info)
}

func writeJSONFile(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), mode)
}
