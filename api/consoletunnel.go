package api

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/opentunnel"
)

// The web console's terminal opens tunnels for a signed-in user, who has
// no access key the server could sign with. Each such tunnel is decided
// as an OpenTunnel call of that user, through the same checks, policy
// evaluation, connection limit and audit record as a presigned request:
//
//   - through a relay-mode endpoint whose process is connected to this
//     server, in-process: AuthorizeTunnelAs;
//   - through any other endpoint, at its DnsName, like any client: the URL
//     carries, in place of a SigV4 presignature, a ticket
//     (ParamConsoleTicket) that stands for the user. The endpoint hands the
//     request to a server to authorize as it would a presigned one, and
//     AuthorizeTunnel redeems the ticket there.
//
// A ticket is minted only here, for a console session the server has
// authenticated. It names the user (name and id), the session's MFA, the
// browser's address, and the one tunnel it opens (endpoint, address, port,
// duration); it lives consoleTicketLifetime, opens one tunnel, and is
// authenticated with an HMAC-SHA-256 key derived from the key-signing
// key, which every replica holds, so any replica can redeem it. It never
// reaches the browser.

// ParamConsoleTicket is the OpenTunnel query parameter that carries a
// console ticket.
const ParamConsoleTicket = "X-Postern-Console-Ticket"

// consoleTicketLifetime is how long a console ticket may be redeemed, as
// long as a presigned OpenTunnel URL lives.
const consoleTicketLifetime = maxTunnelURLLifetime

// ticketKeyInfo separates the ticket key from every other use of the
// key-signing key.
const ticketKeyInfo = "postern console tunnel ticket v1"

// ConsoleTunnel is a tunnel the web console opens for a signed-in user.
type ConsoleTunnel struct {
	Principal *authority.Principal
	// Env is the browser's: its address (aws:SourceIp and the audit
	// record's source) and whether the session used MFA.
	Env        authority.Env
	EndpointID string
	Target     string // the instance's private address
	RemotePort int
	// MaxTunnelDuration, in seconds, bounds the tunnel; zero asks for
	// none, and the endpoint's maximum applies.
	MaxTunnelDuration int
}

// query is the OpenTunnel request's query.
func (ct ConsoleTunnel) query() url.Values {
	return opentunnel.Params{EndpointID: ct.EndpointID, PrivateIP: ct.Target, RemotePort: ct.RemotePort,
		MaxTunnelDuration: ct.MaxTunnelDuration}.Query()
}

// AuthorizeTunnelAs decides, in-process, the tunnel through endpoint ep
// that the console opens for ct.Principal: the checks, policy evaluation
// (aws:SourceIp the browser's address, aws:MultiFactorAuthPresent for MFA
// sessions), connection limit (reserve) and OpenTunnel audit record of a
// presigned request, without SigV4. The record names the user, with no
// access key, userAgent ConsoleUserAgent and additionalEventData's
// invokedBy and sessionType "console"; the tunnel's Caller is the user, so
// its CloseTunnel record names them too.
func (s *Server) AuthorizeTunnelAs(ctx context.Context, ep *postern.Endpoint, ct ConsoleTunnel, reserve TunnelReserver) endpointproto.AuthorizeResponse {
	c := s.tunnelCall(ctx)
	c.r, _ = http.NewRequestWithContext(ctx, http.MethodGet, endpointproto.OpenTunnelPath, nil)
	c.principal, c.console = ct.Principal, true
	c.env = consoleEnv(ct.Env, ct.Principal.MFA, c.start)
	q := ct.query()
	c.noteTunnel(ep, q)
	t, err := c.openTunnel(ep, q, "")
	return c.endTunnel(t, err, reserve)
}

func consoleEnv(env authority.Env, mfa bool, now time.Time) authority.Env {
	return authority.Env{SourceIP: env.SourceIP, UserAgent: ConsoleUserAgent, Time: now, MFA: env.MFA || mfa}
}

// consoleTicket is what a ticket says.
type consoleTicket struct {
	User       string `json:"user"`
	UserID     string `json:"userId"`
	MFA        bool   `json:"mfa,omitempty"`
	SourceIP   string `json:"sourceIp"`
	EndpointID string `json:"endpointId"`
	Target     string `json:"target"`
	Port       int    `json:"port"`
	Duration   int    `json:"maxTunnelDuration,omitempty"`
	Expires    int64  `json:"expires"` // Unix seconds
	Nonce      string `json:"nonce"`
}

// ConsoleTunnelURL returns the URL at which the console opens ct's tunnel
// through the endpoint reached at dnsName: the OpenTunnel URL a client
// would presign, carrying a ticket for ct's user instead of a signature.
// Like a presigned URL it is a credential until it expires or is used:
// never log it, nor show it to the browser.
func (s *Server) ConsoleTunnelURL(ct ConsoleTunnel, dnsName string) (string, error) {
	if s.ticketKey == nil {
		return "", postern.CodedErrorf(postern.KindUnavailable, "ServiceException", "This server cannot open tunnels for the console")
	}
	if ct.Principal == nil || dnsName == "" {
		return "", postern.Invalidf("a console tunnel needs a user and an endpoint DNS name")
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", err
	}
	tk := consoleTicket{
		User: ct.Principal.User.Name, UserID: ct.Principal.User.ID, MFA: ct.Env.MFA || ct.Principal.MFA,
		SourceIP: ct.Env.SourceIP.String(), EndpointID: ct.EndpointID, Target: ct.Target, Port: ct.RemotePort,
		Duration: ct.MaxTunnelDuration, Expires: s.now().Add(consoleTicketLifetime).Unix(), Nonce: hex.EncodeToString(nonce[:]),
	}
	payload, err := json.Marshal(tk)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	q := ct.query()
	q.Set(ParamConsoleTicket, body+"."+base64.RawURLEncoding.EncodeToString(s.ticketMAC(body)))
	u := url.URL{Scheme: "wss", Host: dnsName, Path: endpointproto.OpenTunnelPath, RawQuery: q.Encode()}
	return u.String(), nil
}

// deriveTicketKey derives the ticket key from the key-signing key.
func deriveTicketKey(seed []byte) []byte {
	k, err := hkdf.Key(sha256.New, seed, nil, ticketKeyInfo, 32)
	if err != nil {
		panic(err) // only for lengths SHA-256 cannot give
	}
	return k
}

func (s *Server) ticketMAC(body string) []byte {
	m := hmac.New(sha256.New, s.ticketKey)
	m.Write([]byte(body))
	return m.Sum(nil)
}

func ticketRefused(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindUnauthenticated, "InvalidSignatureException", format, args...)
}

// redeemConsoleTicket authenticates an OpenTunnel request that carries a
// console ticket instead of a presignature: the ticket must be this
// server's, unexpired, unused, for exactly the tunnel the query asks for,
// and its user must still exist. The call then runs as that user, from the
// browser's address.
func (c *call) redeemConsoleTicket(ep *postern.Endpoint, q url.Values) error {
	s := c.s
	if len(q[ParamConsoleTicket]) != 1 || q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") {
		return tunnelInvalid("An OpenTunnel request carries either a presignature or a console ticket, once")
	}
	body, mac, ok := strings.Cut(q.Get(ParamConsoleTicket), ".")
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if !ok || err != nil || s.ticketKey == nil || !hmac.Equal(got, s.ticketMAC(body)) {
		return ticketRefused("The console ticket is not valid")
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	var tk consoleTicket
	if err != nil || json.Unmarshal(payload, &tk) != nil {
		return ticketRefused("The console ticket is not valid")
	}
	c.extra = map[string]any{"consoleTicketUser": truncate(tk.User, 64)}
	expires := time.Unix(tk.Expires, 0)
	switch {
	case c.start.After(expires):
		return tunnelDenied("The console ticket expired at %s", expires.UTC().Format(time.RFC3339))
	case expires.Sub(c.start) > consoleTicketLifetime+5*time.Minute:
		// Minted by a replica whose clock is far ahead.
		return tunnelDenied("The console ticket is valid too far into the future")
	case tk.EndpointID != ep.ID || q.Get(endpointproto.ParamEndpointID) != tk.EndpointID ||
		q.Get(endpointproto.ParamPrivateIPAddress) != tk.Target ||
		q.Get(endpointproto.ParamRemotePort) != strconv.Itoa(tk.Port) ||
		q.Get(endpointproto.ParamMaxTunnelDuration) != durationParam(tk.Duration):
		return tunnelDenied("The console ticket was issued for another tunnel")
	case !s.usedTunnelURLs.once("ticket:"+tk.Nonce, expires, c.start):
		return tunnelDenied("This console ticket was used already")
	}
	u, err := s.auth.Store().GetUser(c.ctx, tk.User)
	if postern.IsKind(err, postern.KindNotFound) || err == nil && u.ID != tk.UserID {
		return ticketRefused("The console ticket's user %s no longer exists", truncate(tk.User, 64))
	}
	if err != nil {
		return err
	}
	src, _ := netip.ParseAddr(tk.SourceIP)
	c.principal = &authority.Principal{User: *u, ARN: s.auth.UserARN(u.Name), MFA: tk.MFA}
	c.console = true
	// The record's source is the browser's; where the ticket came from
	// (a server, as the endpoint saw it) is noted beside it.
	delete(c.extra, "consoleTicketUser")
	c.extra["ticketSourceIPAddress"] = c.env.SourceIP.String()
	c.env = consoleEnv(authority.Env{SourceIP: src}, tk.MFA, c.start)
	return nil
}

// durationParam is the maxTunnelDuration query value for seconds.
func durationParam(seconds int) string {
	if seconds <= 0 {
		return ""
	}
	return strconv.Itoa(seconds)
}
