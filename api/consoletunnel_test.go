package api

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/store/sqlite/sqlitetest"
)

// tunnelFixture is an API server with an endpoint that has joined, and a
// console user, tunneller, whose policy allows OpenTunnel to port 22 only.
type tunnelFixture struct {
	st   postern.Store
	auth *authority.Authority
	s    *Server
	ep   *postern.Endpoint
	p    *authority.Principal
}

const tunnelPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2-instance-connect:OpenTunnel",
	"Resource":"arn:aws:ec2:*:*:instance-connect-endpoint/*","Condition":{"NumericEquals":{"ec2-instance-connect:remotePort":"22"}}}]}`

func newTunnelFixture(t *testing.T) *tunnelFixture {
	t.Helper()
	ctx := t.Context()
	st, sealer := sqlitetest.Open(t)
	auth := authority.New(authority.Config{Region: "us-east-1", Account: "123456789012"}, st, sealer, nil)
	u, err := auth.CreateUser(ctx, "tunneller")
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: "tunneller", Name: "tunnels", Document: tunnelPolicy}); err != nil {
		t.Fatal(err)
	}
	vpc, err := auth.CreateVPC(ctx, "10.0.0.0/16", nil)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := auth.CreateSubnet(ctx, vpc.ID, "10.0.1.0/24", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, cred, _, err := auth.CreateEndpoint(ctx, authority.EndpointInput{SubnetID: sn.ID}, "arn:aws:iam::123456789012:user/admin")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := auth.JoinEndpoint(ctx, cred, "eice.example.test:8443")
	if err != nil {
		t.Fatal(err)
	}
	_, auditKey, _ := ed25519.GenerateKey(nil)
	_, ksk, _ := ed25519.GenerateKey(nil)
	s := New(Config{Authority: auth, Trail: audit.NewTrail(st, auditKey, nil), KeyPush: KeyPush{Signer: ksk}})
	return &tunnelFixture{st: st, auth: auth, s: s, ep: ep, p: &authority.Principal{User: *u, ARN: auth.UserARN("tunneller")}}
}

func (f *tunnelFixture) consoleTunnel(port int) ConsoleTunnel {
	return ConsoleTunnel{
		Principal: f.p, Env: authority.Env{SourceIP: netip.MustParseAddr("192.0.2.7"), MFA: true},
		EndpointID: f.ep.ID, Target: "10.0.1.5", RemotePort: port,
	}
}

// records returns the OpenTunnel audit records, newest first.
func (f *tunnelFixture) records(t *testing.T) []audit.Event {
	t.Helper()
	recs, err := f.st.LookupAudit(t.Context(), postern.AuditQuery{EventName: "OpenTunnel", Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]audit.Event, len(recs))
	for i, rec := range recs {
		if err := json.Unmarshal(rec.Body, &evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

// checkConsoleRecord checks that ev is an OpenTunnel decision of the
// console user, from the browser, with errorCode code.
func checkConsoleRecord(t *testing.T, ev audit.Event, code string) {
	t.Helper()
	if ev.UserIdentity.UserName != "tunneller" || ev.UserIdentity.ARN != "arn:aws:iam::123456789012:user/tunneller" ||
		ev.UserIdentity.AccessKeyID != "" || ev.SourceIPAddress != "192.0.2.7" || ev.UserAgent != ConsoleUserAgent || ev.ErrorCode != code {
		t.Errorf("record: user %+v, source %s, agent %s, error %s; want tunneller from 192.0.2.7 by the console, error %q",
			ev.UserIdentity, ev.SourceIPAddress, ev.UserAgent, ev.ErrorCode, code)
	}
	if ev.AdditionalEventData["invokedBy"] != ConsoleUserAgent || ev.AdditionalEventData["sessionType"] != "console" ||
		ev.AdditionalEventData["mfaAuthenticated"] != true || ev.AdditionalEventData["policyDecisions"] == nil {
		t.Errorf("additionalEventData %v", ev.AdditionalEventData)
	}
}

// TestAuthorizeTunnelAs: the console's in-process tunnels are decided by
// the user's policy, counted, and audited in the user's name.
func TestAuthorizeTunnelAs(t *testing.T) {
	f := newTunnelFixture(t)
	reserved := 0
	reserve := func(*endpointproto.Tunnel) (func(), error) { reserved++; return func() {}, nil }

	resp := f.s.AuthorizeTunnelAs(t.Context(), f.ep, f.consoleTunnel(22), reserve)
	if !resp.Allowed || resp.Tunnel == nil || resp.Tunnel.Caller != f.p.ARN || resp.Tunnel.SourceIP != "192.0.2.7" ||
		resp.Tunnel.Target != "10.0.1.5" || resp.Tunnel.RemotePort != 22 || resp.Tunnel.MaxDuration != 3600 || reserved != 1 {
		t.Fatalf("AuthorizeTunnelAs to port 22 = %+v (%+v), %d reserved", resp, resp.Error, reserved)
	}
	evs := f.records(t)
	if len(evs) != 1 || evs[0].RequestID != resp.Tunnel.ID {
		t.Fatalf("%d records; want the one of tunnel %s", len(evs), resp.Tunnel.ID)
	}
	checkConsoleRecord(t, evs[0], "")

	// The policy allows port 22 only.
	resp = f.s.AuthorizeTunnelAs(t.Context(), f.ep, f.consoleTunnel(3389), reserve)
	if resp.Allowed || resp.Error == nil || resp.Error.Status != http.StatusForbidden || resp.Error.ErrorCode != "AccessDeniedException" ||
		!strings.Contains(resp.Error.Message, "ec2-instance-connect:OpenTunnel") || reserved != 1 {
		t.Fatalf("AuthorizeTunnelAs to port 3389 = %+v (%+v)", resp, resp.Error)
	}
	evs = f.records(t)
	if len(evs) != 2 || evs[0].RequestID != resp.Error.RequestID {
		t.Fatalf("%d records; want the denial %s too", len(evs), resp.Error.RequestID)
	}
	checkConsoleRecord(t, evs[0], "AccessDeniedException")

	// The endpoint's own checks apply as to anyone: a target outside its VPC.
	ct := f.consoleTunnel(22)
	ct.Target = "192.168.7.7"
	if resp := f.s.AuthorizeTunnelAs(t.Context(), f.ep, ct, reserve); resp.Allowed || resp.Error.Status != http.StatusForbidden {
		t.Errorf("a console tunnel outside the VPC = %+v", resp)
	}
}

// TestConsoleTicket: a ticketed URL, presented at the endpoint like a
// presigned one, opens one tunnel as the console user, exactly the one it
// was issued for, within its minute.
func TestConsoleTicket(t *testing.T) {
	f := newTunnelFixture(t)
	// authorize hands the URL's request to AuthorizeTunnel as an endpoint
	// does, as seen from source.
	authorize := func(rawURL, source string) endpointproto.AuthorizeResponse {
		t.Helper()
		u, err := url.Parse(rawURL)
		if err != nil {
			t.Fatal(err)
		}
		return f.s.AuthorizeTunnel(context.Background(), f.ep, endpointproto.AuthorizeRequest{
			Method: http.MethodGet, RequestURI: u.RequestURI(), Host: u.Host, SourceIP: source, UserAgent: ConsoleUserAgent,
		}, nil)
	}
	mint := func(ct ConsoleTunnel) string {
		t.Helper()
		u, err := f.s.ConsoleTunnelURL(ct, f.ep.DNSName)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u, "wss://eice.example.test:8443/openTunnel?") || !strings.Contains(u, ParamConsoleTicket+"=") {
			t.Fatalf("ConsoleTunnelURL = %s", u)
		}
		return u
	}

	u := mint(f.consoleTunnel(22))
	resp := authorize(u, "198.51.100.1")
	if !resp.Allowed || resp.Tunnel.Caller != f.p.ARN || resp.Tunnel.SourceIP != "192.0.2.7" {
		t.Fatalf("a ticketed tunnel = %+v (%+v)", resp, resp.Error)
	}
	ev := f.records(t)[0]
	checkConsoleRecord(t, ev, "")
	if ev.AdditionalEventData["ticketSourceIPAddress"] != "198.51.100.1" {
		t.Errorf("the record does not say where the ticket came from: %v", ev.AdditionalEventData)
	}
	if resp := authorize(u, "198.51.100.1"); resp.Allowed || resp.Error.Status != http.StatusForbidden || !strings.Contains(resp.Error.Message, "used already") {
		t.Errorf("a ticket used twice = %+v", resp.Error)
	}

	// The user's policy decides, as for any request.
	if resp := authorize(mint(f.consoleTunnel(3389)), "198.51.100.1"); resp.Allowed || resp.Error.ErrorCode != "AccessDeniedException" {
		t.Errorf("a ticketed tunnel the policy refuses = %+v", resp.Error)
	} else {
		checkConsoleRecord(t, f.records(t)[0], "AccessDeniedException")
	}

	// A ticket opens only the tunnel it names, and only with its MAC.
	for _, tc := range []struct {
		name, want string
		edit       func(q url.Values)
	}{
		{"another port", "issued for another tunnel", func(q url.Values) { q.Set(endpointproto.ParamRemotePort, "2222") }},
		{"another address", "issued for another tunnel", func(q url.Values) { q.Set(endpointproto.ParamPrivateIPAddress, "10.0.1.6") }},
		{"another duration", "issued for another tunnel", func(q url.Values) { q.Set(endpointproto.ParamMaxTunnelDuration, "60") }},
		{"a forged ticket", "InvalidSignatureException", func(q url.Values) {
			body, mac, _ := strings.Cut(q.Get(ParamConsoleTicket), ".")
			q.Set(ParamConsoleTicket, body+"x."+mac)
		}},
		{"with a signature", "either a presignature or a console ticket", func(q url.Values) { q.Set("X-Amz-Signature", strings.Repeat("0", 64)) }},
	} {
		v, _ := url.Parse(mint(f.consoleTunnel(22)))
		q := v.Query()
		tc.edit(q)
		v.RawQuery = q.Encode()
		if resp := authorize(v.String(), "198.51.100.1"); resp.Allowed || !strings.Contains(resp.Error.ErrorCode+": "+resp.Error.Message, tc.want) {
			t.Errorf("%s: %+v (%+v); want a refusal saying %q", tc.name, resp, resp.Error, tc.want)
		}
	}

	// Another server's ticket, an expired one, a deleted user's.
	_, otherKSK, _ := ed25519.GenerateKey(nil)
	other := New(Config{Authority: f.auth, Trail: f.s.cfg.Trail, KeyPush: KeyPush{Signer: otherKSK}})
	foreign, _ := other.ConsoleTunnelURL(f.consoleTunnel(22), f.ep.DNSName)
	if resp := authorize(foreign, "198.51.100.1"); resp.Allowed || resp.Error.ErrorCode != "InvalidSignatureException" {
		t.Errorf("another server's ticket = %+v", resp.Error)
	}
	stale := mint(f.consoleTunnel(22))
	f.s.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if resp := authorize(stale, "198.51.100.1"); resp.Allowed || !strings.Contains(resp.Error.Message, "expired") {
		t.Errorf("an expired ticket = %+v", resp.Error)
	}
	f.s.now = time.Now
	gone := mint(f.consoleTunnel(22))
	if err := f.st.DeletePolicy(t.Context(), postern.PolicyOwnerUser, "tunneller", "tunnels"); err != nil {
		t.Fatal(err)
	}
	if err := f.auth.DeleteUser(t.Context(), "tunneller"); err != nil {
		t.Fatal(err)
	}
	if resp := authorize(gone, "198.51.100.1"); resp.Allowed || !strings.Contains(resp.Error.Message, "no longer exists") {
		t.Errorf("a deleted user's ticket = %+v", resp.Error)
	}
}
