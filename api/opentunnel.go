package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/dialguard"
	"github.com/postern-dev/postern/endpointproto"
)

// OpenTunnel's presigned URLs live at most this long (the AWS CLI signs
// them for 60 seconds).
const maxTunnelURLLifetime = 60 * time.Second

// Condition keys of ec2-instance-connect:OpenTunnel.
const (
	keyRemotePort        = "ec2-instance-connect:remotePort"
	keyPrivateIPAddress  = "ec2-instance-connect:privateIpAddress"
	keyMaxTunnelDuration = "ec2-instance-connect:maxTunnelDuration"
)

// usedURLs binds each presigned OpenTunnel URL, until it expires, to the
// first source address that used it: a URL seen in a log, a proxy or a
// browser history cannot be replayed from elsewhere within its minute.
// The same client may use it again: signatures are deterministic, so a
// client that signs several identical tunnels within one second (the AWS
// CLI's --local-port mode does) sends the very same URL each time.
type usedURLs struct {
	mu   sync.Mutex
	seen map[string]usedURL // by signature
	next time.Time          // when to sweep expired entries next
}

type usedURL struct {
	source  netip.Addr
	expires time.Time
}

// bind records that source uses sig until expires and reports whether
// that is allowed: sig is new, or was first used from source.
func (u *usedURLs) bind(sig string, source netip.Addr, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	if prev, ok := u.seen[sig]; ok {
		return prev.source == source
	}
	u.seen[sig] = usedURL{source: source, expires: expires}
	return true
}

// once records that key is used until expires and reports whether it was
// new: a console ticket opens one tunnel.
func (u *usedURLs) once(key string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sweep(now)
	if _, ok := u.seen[key]; ok {
		return false
	}
	u.seen[key] = usedURL{expires: expires}
	return true
}

// sweep forgets expired entries, every ten seconds at most; u.mu is held.
func (u *usedURLs) sweep(now time.Time) {
	if u.seen == nil {
		u.seen = map[string]usedURL{}
	}
	if now.After(u.next) {
		for k, v := range u.seen {
			if now.After(v.expires) {
				delete(u.seen, k)
			}
		}
		u.next = now.Add(10 * time.Second)
	}
}

// tunnelRequest is what an OpenTunnel URL asks for.
type tunnelRequest struct {
	endpointID  string
	target      netip.Addr
	port        int
	maxDuration int // seconds; 0 when not asked
}

func tunnelInvalid(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindInvalid, "ValidationException", format, args...)
}

func tunnelDenied(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindDenied, "AccessDeniedException", format, args...)
}

// parseTunnelQuery reads and checks OpenTunnel's parameters.
func parseTunnelQuery(q url.Values) (tunnelRequest, error) {
	var t tunnelRequest
	for _, k := range []string{endpointproto.ParamEndpointID, endpointproto.ParamRemotePort, endpointproto.ParamPrivateIPAddress, endpointproto.ParamMaxTunnelDuration} {
		if len(q[k]) > 1 {
			return t, tunnelInvalid("%s is given more than once", k)
		}
	}
	t.endpointID = q.Get(endpointproto.ParamEndpointID)
	if t.endpointID == "" {
		return t, tunnelInvalid("%s is required", endpointproto.ParamEndpointID)
	}
	port, err := strconv.Atoi(q.Get(endpointproto.ParamRemotePort))
	if err != nil || port < 1 || port > 65535 {
		return t, tunnelInvalid("%s must be a port number from 1 to 65535", endpointproto.ParamRemotePort)
	}
	t.port = port
	ip, err := netip.ParseAddr(q.Get(endpointproto.ParamPrivateIPAddress))
	if err != nil || ip.Zone() != "" {
		return t, tunnelInvalid("%s must be an IPv4 or IPv6 address", endpointproto.ParamPrivateIPAddress)
	}
	t.target = ip.Unmap()
	if s := q.Get(endpointproto.ParamMaxTunnelDuration); s != "" {
		d, err := strconv.Atoi(s)
		if err != nil || d < 1 {
			return t, tunnelInvalid("%s must be a whole number of seconds of at least 1", endpointproto.ParamMaxTunnelDuration)
		}
		t.maxDuration = d
	}
	return t, nil
}

// sameHost reports whether the Host a client signed names the endpoint's
// DnsName (port 443 may be left out of either).
func sameHost(signed, dnsName string) bool {
	norm := func(h string) string {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if host, port, err := net.SplitHostPort(h); err == nil && port == "443" {
			return strings.TrimSuffix(host, ".")
		}
		return h
	}
	return dnsName != "" && norm(signed) == norm(dnsName)
}

// TunnelReserver takes an authorized tunnel's place in its endpoint's
// connection limit before the decision is audited; its error (a
// KindLimit TooManyTunnels) refuses the tunnel, audited as such. release
// gives the place back when the tunnel is refused after all.
type TunnelReserver func(t *endpointproto.Tunnel) (release func(), err error)

// AuthorizeTunnel decides an OpenTunnel handshake that reached endpoint ep:
// it verifies the SigV4 presignature (service ec2-instance-connect, this
// region, at most 60 seconds, used from one source address only, signed
// for ep's DnsName and id), or the web console's ticket in its place
// (ParamConsoleTicket), checks the parameters against ep's settings,
// evaluates ec2-instance-connect:OpenTunnel on ep's ARN with the request's
// condition keys and aws:SourceIp, and audits the decision. A refusal
// carries the HTTP status, AWS error code and message for the client.
func (s *Server) AuthorizeTunnel(ctx context.Context, ep *postern.Endpoint, in endpointproto.AuthorizeRequest, reserve TunnelReserver) endpointproto.AuthorizeResponse {
	c := s.tunnelCall(ctx)
	r, err := tunnelHTTPRequest(ctx, in)
	if err != nil {
		// An unparseable request still gets audited, as far as it goes.
		c.r, _ = http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		c.r.RemoteAddr = in.SourceIP
		return c.endTunnel(nil, err, nil)
	}
	c.r = r
	c.env = authority.Env{SourceIP: SourceIP(r), UserAgent: r.UserAgent(), Time: c.start}
	q := r.URL.Query()
	c.noteTunnel(ep, q)
	if q.Has(ParamConsoleTicket) {
		err = c.redeemConsoleTicket(ep, q)
	} else {
		err = c.authenticatePresigned()
	}
	var t *endpointproto.Tunnel
	if err == nil {
		t, err = c.openTunnel(ep, q, r.Host)
	}
	return c.endTunnel(t, err, reserve)
}

// tunnelCall starts the audited call of one OpenTunnel decision.
func (s *Server) tunnelCall(ctx context.Context) *call {
	return &call{s: s, ctx: ctx, start: s.now(), id: newRequestID(), svc: s.eicTunnelService(), opName: "OpenTunnel", op: &operation{},
		params: map[string]any{}}
}

// endTunnel takes an authorized tunnel's place with reserve and audits the
// decision; err, or a failure on the way, refuses the tunnel.
func (c *call) endTunnel(t *endpointproto.Tunnel, err error, reserve TunnelReserver) endpointproto.AuthorizeResponse {
	s := c.s
	if c.console {
		if c.extra == nil {
			c.extra = map[string]any{}
		}
		c.extra["invokedBy"] = ConsoleUserAgent
	}
	if err == nil {
		t.SourceIP = c.env.SourceIP.String()
		release := func() {}
		if reserve != nil {
			release, err = reserve(t)
		}
		if err == nil {
			if err = c.record(nil); err == nil {
				return endpointproto.AuthorizeResponse{Allowed: true, Tunnel: t}
			}
			release()
			s.log.Error("audit write failed; refusing the tunnel", "request_id", c.id, "err", err)
			return endpointproto.AuthorizeResponse{Error: tunnelError(postern.Internal(err, "audit write failed"))}
		}
	}
	if aerr := c.record(err); aerr != nil {
		s.log.Error("audit write failed", "request_id", c.id, "err", aerr)
		err = postern.Internal(aerr, "audit write failed")
	}
	te := tunnelError(err)
	te.RequestID = c.id
	if te.Status >= 500 {
		s.log.Error("OpenTunnel failed", "request_id", c.id, "err", err)
	}
	return endpointproto.AuthorizeResponse{Error: te}
}

// eicTunnelService describes OpenTunnel for the audit trail and errors.
func (s *Server) eicTunnelService() *service {
	return &service{proto: protoJSON, signingName: "ec2-instance-connect", eventSource: "ec2-instance-connect.amazonaws.com"}
}

// tunnelHTTPRequest rebuilds the client's handshake request from what the
// endpoint passed on.
func tunnelHTTPRequest(ctx context.Context, in endpointproto.AuthorizeRequest) (*http.Request, error) {
	if in.Method != http.MethodGet {
		return nil, tunnelInvalid("OpenTunnel is a GET request")
	}
	if !strings.HasPrefix(in.RequestURI, endpointproto.OpenTunnelPath+"?") && in.RequestURI != endpointproto.OpenTunnelPath {
		return nil, tunnelInvalid("OpenTunnel is served at %s", endpointproto.OpenTunnelPath)
	}
	r, err := http.NewRequestWithContext(ctx, in.Method, "https://"+in.Host+in.RequestURI, nil)
	if err != nil || in.Host == "" {
		return nil, tunnelInvalid("the OpenTunnel request's host or URL is malformed")
	}
	r.RequestURI = in.RequestURI
	r.Host = in.Host
	r.RemoteAddr = net.JoinHostPort(in.SourceIP, "0")
	if in.UserAgent != "" {
		r.Header.Set("User-Agent", in.UserAgent)
	}
	return r, nil
}

// noteTunnel notes the tunnel's parameters and endpoint for the audit
// record.
func (c *call) noteTunnel(ep *postern.Endpoint, q url.Values) {
	for _, k := range []string{endpointproto.ParamEndpointID, endpointproto.ParamRemotePort, endpointproto.ParamPrivateIPAddress, endpointproto.ParamMaxTunnelDuration} {
		if v := q.Get(k); v != "" {
			c.params[k] = truncate(v, 64)
		}
	}
	c.addResource(c.s.auth.EC2ARN("instance-connect-endpoint", ep.ID))
}

// authenticatePresigned verifies the SigV4 presignature of an OpenTunnel
// URL: at most 60 seconds long, used from one source address only.
func (c *call) authenticatePresigned() error {
	if err := c.authenticate(); err != nil {
		return err
	}
	sig := c.principal.Signature
	if !sig.Presigned {
		return tunnelInvalid("OpenTunnel needs a presigned URL (X-Amz-Signature in the query)")
	}
	if sig.Expires.Sub(sig.SignedAt) > maxTunnelURLLifetime {
		return tunnelInvalid("X-Amz-Expires is %d seconds; an OpenTunnel URL may live at most %d", int(sig.Expires.Sub(sig.SignedAt)/time.Second), int(maxTunnelURLLifetime/time.Second))
	}
	// Bound by the signature's bytes: the same URL with its hexadecimal
	// digits in another case is the same URL.
	if !c.s.usedTunnelURLs.bind(string(sig.Signature), c.env.SourceIP, sig.Expires, c.start) {
		return tunnelDenied("This presigned OpenTunnel URL was already used from another address; sign a new one where you connect from")
	}
	return nil
}

// openTunnel checks the tunnel q asks for against ep and authorizes it
// for the caller, whom the call has authenticated; the caller audits. host
// is the Host the request was sent to, which must name ep ("" for the
// console's in-process tunnels, which are sent nowhere).
func (c *call) openTunnel(ep *postern.Endpoint, q url.Values, host string) (*endpointproto.Tunnel, error) {
	if err := c.throttled(); err != nil {
		return nil, err
	}
	t, err := parseTunnelQuery(q)
	if err != nil {
		return nil, err
	}
	switch {
	case t.endpointID != ep.ID:
		return nil, tunnelDenied("The URL was signed for Instance Connect Endpoint %s, not %s", truncate(t.endpointID, 40), ep.ID)
	case ep.State != postern.EndpointCreateComplete:
		return nil, postern.CodedErrorf(postern.KindConflict, "IncorrectState", "Instance Connect Endpoint %s is %s and opens no tunnels", ep.ID, ep.State)
	case host != "" && !sameHost(host, ep.DNSName):
		return nil, tunnelDenied("The URL was signed for host %s; Instance Connect Endpoint %s is reached at %s", truncate(host, 255), ep.ID, ep.DNSName)
	}
	maxDur := int(ep.MaxTunnelDuration / time.Second)
	dur := t.maxDuration
	if dur == 0 {
		dur = maxDur
	}
	if dur > maxDur {
		return nil, tunnelDenied("maxTunnelDuration %d exceeds the %d seconds Instance Connect Endpoint %s allows", dur, maxDur, ep.ID)
	}
	if err := c.checkTarget(ep, t); err != nil {
		return nil, err
	}
	keys := map[string][]string{
		keyRemotePort:        {strconv.Itoa(t.port)},
		keyPrivateIPAddress:  {t.target.String()},
		keyMaxTunnelDuration: {strconv.Itoa(dur)},
	}
	arn := c.s.auth.EC2ARN("instance-connect-endpoint", ep.ID)
	if err := c.authorize("ec2-instance-connect:OpenTunnel", arn, keys); err != nil {
		return nil, err
	}
	c.response = map[string]any{"tunnelId": c.id, "maxTunnelDuration": dur}
	return &endpointproto.Tunnel{
		ID: c.id, Target: t.target.String(), RemotePort: t.port, MaxDuration: dur, Caller: c.principal.ARN,
	}, nil
}

// checkTarget refuses, before the endpoint is asked, a target its dial
// guard would refuse: outside the endpoint's VPC, a port it does not
// tunnel to, loopback, link-local, multicast and the like. (The endpoint
// checks again, and also refuses its own addresses, which only it knows.)
func (c *call) checkTarget(ep *postern.Endpoint, t tunnelRequest) error {
	vpc, err := c.s.auth.Store().GetVPC(c.ctx, ep.VPCID)
	if err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(vpc.CIDR)
	if err != nil {
		return postern.Internal(err, "VPC %s has an unreadable CIDR", vpc.ID)
	}
	ports := make([]uint16, len(ep.AllowedPorts))
	for i, p := range ep.AllowedPorts {
		ports[i] = uint16(p)
	}
	err = dialguard.Policy{VPCCIDRs: []netip.Prefix{prefix}, Ports: ports}.Check(t.target, uint16(t.port))
	var pe *postern.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Kind == postern.KindInvalid:
		return tunnelInvalid("%s", pe.Message)
	case errors.As(err, &pe) && pe.Kind == postern.KindDenied:
		return tunnelDenied("Instance Connect Endpoint %s refuses this tunnel: %s", ep.ID, pe.Message)
	}
	return err
}

// tunnelError is what the client of a refused handshake gets.
func tunnelError(err error) *endpointproto.TunnelError {
	we := toWire(protoJSON, err)
	status := we.Status
	var pe *postern.Error
	if errors.As(err, &pe) && (pe.Kind == postern.KindThrottled || pe.Kind == postern.KindLimit) {
		status = http.StatusTooManyRequests
	}
	return &endpointproto.TunnelError{Status: status, ErrorCode: we.Code, Message: we.Message}
}

// RecordTunnelClosed audits the end of a tunnel that t authorized on ep.
func (s *Server) RecordTunnelClosed(ctx context.Context, ep *postern.Endpoint, t *endpointproto.Tunnel, cl endpointproto.Closed) error {
	cfg := s.auth.Config()
	arn := s.auth.EC2ARN("instance-connect-endpoint", ep.ID)
	ev := &audit.Event{
		EventTime: s.now().UTC(), EventSource: "ec2-instance-connect.amazonaws.com", EventName: "CloseTunnel",
		AWSRegion: cfg.Region, RequestID: newRequestID(), EventType: "AwsServiceEvent", RecipientAccountID: cfg.Account,
		UserIdentity: audit.UserIdentity{Type: "Unknown", AccountID: cfg.Account},
		Resources:    []audit.Resource{{ARN: arn, AccountID: cfg.Account, Type: resourceType(arn)}},
		AdditionalEventData: map[string]any{
			"tunnelId": truncate(cl.TunnelID, 64), "bytesIn": cl.BytesIn, "bytesOut": cl.BytesOut,
			"durationSeconds": float64(cl.DurationMillis) / 1000, "cause": truncate(cl.Cause, 64),
			"closeCode": cl.Code, "closeReason": truncate(cl.Reason, 123),
		},
	}
	if t != nil {
		// The close belongs to whoever opened the tunnel.
		_, name, _ := strings.Cut(t.Caller, ":user/")
		ev.UserIdentity = audit.UserIdentity{Type: "IAMUser", ARN: t.Caller, AccountID: cfg.Account, UserName: name}
		ev.SourceIPAddress = t.SourceIP
		ev.RequestParameters = map[string]any{
			endpointproto.ParamPrivateIPAddress: t.Target, endpointproto.ParamRemotePort: t.RemotePort,
			endpointproto.ParamEndpointID: ep.ID, "caller": t.Caller,
		}
	}
	if _, err := s.cfg.Trail.Record(ctx, ev); err != nil {
		return fmt.Errorf("audit write failed for a tunnel close: %w", err)
	}
	return nil
}
