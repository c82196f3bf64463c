// Package endpoint is the Instance Connect Endpoint process (`postern
// endpoint run`): an identity-aware TCP proxy that sits inside a private
// network, lets the server authorize every tunnel, dials only the targets
// its dial guard allows, and pipes bytes with package tunnel.
//
// It speaks endpointproto to the server. In listen mode it serves
// OpenTunnel over HTTPS where clients reach it; in relay mode it listens on
// nothing and dials the server back for each tunnel the server sends it on
// the control connection. Either way every tunnel takes a slot (at most
// Settings.MaxConnections), its target passes the dial guard, and its end
// is reported to the server for the audit trail.
package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/google/uuid"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern/dialguard"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/tunnel"
)

// Defaults for Config.
const (
	DefaultListen         = "0.0.0.0:8443"
	DefaultGrace          = 30 * time.Second
	DefaultDialTimeout    = dialguard.DefaultTimeout
	DefaultMaxConnections = 20
	DefaultMaxBackoff     = 30 * time.Second
)

// Close reasons sent to clients whose tunnels the endpoint ends.
const (
	ReasonDeleted  = "Instance Connect Endpoint deleted"
	ReasonShutdown = "endpoint shutting down"
)

// ErrDeleted is returned by Run when the server deleted the endpoint: every
// tunnel was closed and the process has nothing left to do.
var ErrDeleted = errors.New("the Instance Connect Endpoint was deleted; its tunnels are closed and it accepts no more")

// Config configures an endpoint. The command layer fills it in and
// validates flags; New checks what the package itself depends on.
type Config struct {
	// Server is the server's base URL (https://host:port), or several
	// replicas' URLs separated by commas: the endpoint uses the first it
	// can reach.
	Server string
	// Credential is the endpoint's join credential, sent as a bearer token
	// on every call. It is never logged.
	Credential string
	// HTTPClient reaches the server; it must trust the server's
	// certificate. http.DefaultClient when nil.
	HTTPClient *http.Client
	// Mode is endpointproto.ModeListen (the default) or ModeRelay.
	Mode string

	// Listen is the address the listen-mode HTTPS server binds
	// (DefaultListen when empty), unless Listener is set.
	Listen string
	// Listener, when set, is used instead of binding Listen. Run closes it.
	Listener net.Listener
	// Advertise is the host:port clients use (the DnsName). In listen mode
	// the listen address when empty; in relay mode clients reach the
	// server, and the server takes the address the endpoint used when
	// empty.
	Advertise string
	// Certificate, when set, is the listen-mode server certificate;
	// otherwise the endpoint asks the server's CA for one when it joins.
	Certificate *tls.Certificate

	// Grace is how long, on shutdown, live tunnels may go on before they
	// are closed (DefaultGrace when zero).
	Grace time.Duration
	// DialTimeout bounds the connect to a target (DefaultDialTimeout when
	// zero).
	DialTimeout time.Duration
	// MaxBackoff caps the wait between attempts to reach the server
	// (DefaultMaxBackoff when zero).
	MaxBackoff time.Duration
	// Version is reported to the server when joining.
	Version string
	Logger  *slog.Logger

	// OwnAddrs are the endpoint host's addresses, which it never dials;
	// the addresses of every local interface when nil.
	OwnAddrs []netip.Addr

	// Dial is for tests only: it replaces the guarded dialer
	// (dialguard.Dialer), so that a test can stand a target on loopback
	// for a VPC address. The endpoint still checks every target against
	// policy (the dial guard's Policy as joined and set by the server)
	// before calling it. Production code leaves it nil.
	Dial func(ctx context.Context, policy dialguard.Policy, addr netip.Addr, port uint16) (net.Conn, error)
}

// Endpoint is one endpoint process.
type Endpoint struct {
	cfg     Config
	log     *slog.Logger
	srv     *serverClient
	tunnels *tunnels
	// process names this process among the endpoint's processes, which
	// share its connection limit at the server.
	process string

	mu       sync.Mutex
	settings endpointproto.Settings
	policy   dialguard.Policy

	// relays tracks the goroutines of relay-mode tunnels, and reporting
	// the close reports of tunnels that gave their slot back.
	relays, reporting sync.WaitGroup
	// reports bounds the close reports of tunnels, which must outlive the
	// Run context so that a shutdown still reports every tunnel.
	reports context.Context
}

// New checks cfg and returns an endpoint ready to Run.
func New(cfg Config) (*Endpoint, error) {
	if cfg.Mode == "" {
		cfg.Mode = endpointproto.ModeListen
	}
	if cfg.Mode != endpointproto.ModeListen && cfg.Mode != endpointproto.ModeRelay {
		return nil, fmt.Errorf("endpoint mode %q: use %s or %s", cfg.Mode, endpointproto.ModeListen, endpointproto.ModeRelay)
	}
	if cfg.Credential == "" {
		return nil, errors.New("the endpoint's join credential is required")
	}
	var servers []string
	for _, u := range strings.Split(cfg.Server, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return nil, fmt.Errorf("server URL %q: want https://host:port", u)
		}
		servers = append(servers, u)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OwnAddrs == nil {
		own, err := dialguard.InterfaceAddrs()
		if err != nil {
			return nil, err
		}
		cfg.OwnAddrs = own
	}
	e := &Endpoint{
		cfg:     cfg,
		log:     cfg.Logger,
		srv:     &serverClient{bases: servers, credential: cfg.Credential, hc: cfg.HTTPClient},
		process: uuid.NewString(),
		tunnels: newTunnels(DefaultMaxConnections),
		reports: context.Background(),
	}
	return e, nil
}

// Run joins the server, serves tunnels and keeps the control connection
// until ctx is done or the server deletes the endpoint. When ctx ends it
// refuses new tunnels, lets live ones go on for Config.Grace, closes the
// rest with StatusGoingAway, reports them all and returns nil. When the
// endpoint is deleted it returns ErrDeleted.
func (e *Endpoint) Run(ctx context.Context) (err error) {
	ln := e.cfg.Listener
	defer func() {
		if ln != nil {
			ln.Close()
		}
	}()
	e.reports = context.WithoutCancel(ctx)
	join, key, err := e.join(ctx)
	if err != nil {
		return err
	}
	e.log.Info("joined the server", "endpoint", join.EndpointID, "mode", e.cfg.Mode, "vpc", join.VPCID,
		"dns_name", join.DNSName, "max_connections", e.tunnels.limitNow())

	var hs *http.Server
	serveErr := make(chan error, 1)
	if e.cfg.Mode == endpointproto.ModeListen {
		tlsCfg, err := e.serverTLS(join, key)
		if err != nil {
			return err
		}
		if ln == nil {
			if ln, err = net.Listen("tcp", e.cfg.Listen); err != nil {
				return fmt.Errorf("listening for tunnels: %w", err)
			}
		}
		hs = e.httpServer(tlsCfg)
		e.log.Info("listening for tunnels", "addr", ln.Addr().String())
		l := ln
		ln = nil // the server owns it now
		go func() { serveErr <- hs.ServeTLS(l, "", "") }()
	}

	// The control connection outlives ctx: during the grace period the
	// server may still send settings or deletion, and relay dials are
	// refused with a clear answer rather than left hanging.
	controlCtx, stopControl := context.WithCancel(context.WithoutCancel(ctx))
	defer stopControl()
	controlDone := make(chan error, 1)
	go func() { controlDone <- e.control(controlCtx) }()

	select {
	case <-ctx.Done():
		e.shutdown()
		stopControl()
		if cerr := <-controlDone; errors.Is(cerr, ErrDeleted) {
			err = cerr
		}
	case err = <-controlDone:
		// Only deletion ends the control loop before ctx does; the
		// tunnels are closed already.
	case err = <-serveErr:
		err = fmt.Errorf("serving tunnels: %w", err)
		e.tunnels.stop(refusalShutdown)
		e.closeTunnels(ReasonShutdown)
		stopControl()
		<-controlDone
	}
	e.relays.Wait()
	if hs != nil {
		sctx, cancel := context.WithTimeout(e.reports, 5*time.Second)
		hs.Shutdown(sctx)
		cancel()
	}
	return err
}

// shutdown refuses new tunnels, waits up to the grace period for the live
// ones, then closes them and waits for their reports.
func (e *Endpoint) shutdown() {
	e.tunnels.stop(refusalShutdown)
	n := e.tunnels.count()
	e.log.Info("shutting down: refusing new tunnels", "live", n, "grace", e.cfg.Grace)
	if n > 0 {
		gctx, cancel := context.WithTimeout(context.Background(), e.cfg.Grace)
		defer cancel()
		if e.tunnels.wait(gctx) == nil {
			e.reporting.Wait()
			return
		}
	}
	e.closeTunnels(ReasonShutdown)
}

// closeTunnels closes every live tunnel with StatusGoingAway and reason,
// and waits until each has ended and been reported. The caller has stopped
// new ones.
func (e *Endpoint) closeTunnels(reason string) {
	if n := e.tunnels.closeAll(&tunnel.CloseError{Code: tunnel.StatusGoingAway, Reason: reason}); n > 0 {
		e.log.Info("closing live tunnels", "count", n, "reason", reason)
	}
	e.tunnels.wait(context.Background())
	e.reporting.Wait()
}

// deleted handles the server's deletion of the endpoint.
func (e *Endpoint) deleted() {
	e.tunnels.stop(refusalDeleted)
	e.log.Warn("the server deleted this endpoint: closing every tunnel")
	e.closeTunnels(ReasonDeleted)
}

// applySettings makes s the endpoint's settings.
func (e *Endpoint) applySettings(s endpointproto.Settings) {
	if s.MaxConnections <= 0 {
		s.MaxConnections = DefaultMaxConnections
	}
	ports := make([]uint16, 0, len(s.AllowedPorts))
	for _, p := range s.AllowedPorts {
		if p > 0 && p <= 65535 {
			ports = append(ports, uint16(p))
		}
	}
	e.mu.Lock()
	e.settings = s
	e.policy.Ports = ports
	e.mu.Unlock()
	e.tunnels.setLimit(s.MaxConnections)
}

// current returns the settings and dial policy in force.
func (e *Endpoint) current() (endpointproto.Settings, dialguard.Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.settings, e.policy
}

// limits are the data-plane limits of t: its authorized duration, capped
// by the endpoint's setting.
func (e *Endpoint) limits(t *endpointproto.Tunnel) tunnel.Limits {
	s, _ := e.current()
	d := time.Duration(t.MaxDuration) * time.Second
	if max := time.Duration(s.MaxTunnelDuration) * time.Second; max > 0 && (d <= 0 || d > max) {
		d = max
	}
	return tunnel.Limits{MaxDuration: d}
}
