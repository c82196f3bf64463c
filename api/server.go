// Package api serves Postern's AWS-compatible HTTP API: AWS JSON 1.1
// (selected by X-Amz-Target) and the EC2 and IAM Query protocols (selected
// by Action and Version) on one listener. Handlers are thin: decode,
// authorize, call package authority, render. Every call is audited.
package api

import (
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"time"

	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/recording"
)

// DefaultMaxBody is the largest request body accepted (1 MiB).
const DefaultMaxBody = 1 << 20

// Config wires a Server.
type Config struct {
	Authority *authority.Authority
	Trail     *audit.Trail
	// AuditKey is the public half of the key that signs audit digests;
	// clients fetch it to verify the trail.
	AuditKey ed25519.PublicKey
	Logger   *slog.Logger
	Metrics  *Metrics // may be nil
	MaxBody  int64    // 0: DefaultMaxBody
	Throttle ThrottleConfig
	// KeyPush enables SendSSHPublicKey; without a Pusher the operation
	// is not offered.
	KeyPush KeyPush
	// Recordings reads the console's session recordings for
	// GetRecordingContent; nil: the server keeps none.
	Recordings *recording.Recorder
}

// Server is the http.Handler for the AWS-compatible API.
type Server struct {
	cfg      Config
	auth     *authority.Authority
	log      *slog.Logger
	services map[string]*service // by JSON target prefix or Query version
	throttle *throttle
	now      func() time.Time
	// usedTunnelURLs binds each presigned OpenTunnel URL to one source
	// address, and lets each console ticket open one tunnel.
	usedTunnelURLs usedURLs
	// ticketKey authenticates console tickets (consoletunnel.go); nil
	// without a key-signing key.
	ticketKey []byte
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	s := &Server{
		cfg:      cfg,
		auth:     cfg.Authority,
		log:      cfg.Logger,
		throttle: newThrottle(cfg.Throttle),
		now:      time.Now,
	}
	if cfg.KeyPush.Signer != nil {
		s.ticketKey = deriveTicketKey(cfg.KeyPush.Signer.Seed())
	}
	s.services = map[string]*service{}
	svcs := []*service{s.ec2Service(), s.iamService(), s.trailService(), s.posternService(), s.ssmService()}
	if cfg.KeyPush.Pusher != nil {
		svcs = append(svcs, s.eicService())
	}
	for _, svc := range svcs {
		s.services[svc.key] = svc
	}
	return s
}

// ServeHTTP answers one AWS API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := newCall(s, w, r)
	c.serve()
}

// ServeAs answers one AWS API request made by p, whom the caller has
// authenticated some other way (a console session): the same decoding,
// throttling (per user, as "console:"+name), policy evaluation, operation,
// audit record and AWS-shaped answer as ServeHTTP, without SigV4. env's
// zero fields are taken from r; env.MFA or p.MFA sets
// aws:MultiFactorAuthPresent. The audit record names the user with no
// access key and has additionalEventData.sessionType "console".
func (s *Server) ServeAs(w http.ResponseWriter, r *http.Request, p *authority.Principal, env authority.Env) {
	c := newCall(s, w, r)
	if env.SourceIP.IsValid() {
		c.env.SourceIP = env.SourceIP
	}
	if env.UserAgent != "" {
		c.env.UserAgent = env.UserAgent
	}
	if !env.Time.IsZero() {
		c.env.Time = env.Time
	}
	c.env.MFA = env.MFA || p.MFA
	c.principal, c.console = p, true
	c.serve()
}

// SetReplicas tells the server how many replicas serve the same access
// keys; each then allows its share of the throttling rate.
func (s *Server) SetReplicas(n int) { s.throttle.setShare(n) }
