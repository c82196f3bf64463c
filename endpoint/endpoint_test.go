package endpoint

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/tunnel"
)

// harness runs an endpoint against a fake server, with test targets.
type harness struct {
	t       *testing.T
	srv     *fakeServer
	logs    *logBuffer
	addr    string // the listen-mode endpoint's address
	client  *http.Client
	cancel  context.CancelFunc
	done    chan error
	join    endpointproto.JoinRequest
	control *websocket.Conn
}

type options struct {
	mode               string
	settings           endpointproto.Settings
	grace, dialTimeout time.Duration
	ownAddrs           []netip.Addr
}

func start(t *testing.T, o options) *harness {
	t.Helper()
	if o.grace == 0 {
		o.grace = 5 * time.Second
	}
	if o.ownAddrs == nil {
		o.ownAddrs = []netip.Addr{}
	}
	srv := newFakeServer(t, o.settings)
	tg := newTargets(t)
	logs, logger := newLogBuffer(t)
	cfg := Config{Server: srv.ts.URL, Credential: testCredential, HTTPClient: srv.ts.Client(), Mode: o.mode,
		Grace: o.grace, DialTimeout: o.dialTimeout, MaxBackoff: time.Second, Logger: logger, OwnAddrs: o.ownAddrs, Dial: tg.dial}
	h := &harness{t: t, srv: srv, logs: logs, done: make(chan error, 1)}
	if o.mode != endpointproto.ModeRelay {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = ln
		h.addr = ln.Addr().String()
	}
	ep, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- ep.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	h.join = recv(t, srv.joins, "the endpoint to join")
	h.control = recv(t, srv.controls, "the control connection")
	h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.roots}}}
	t.Cleanup(h.client.CloseIdleConnections)
	return h
}

// open opens a tunnel to target:port at the listen-mode endpoint.
func (h *harness) open(target string, port int) (*websocket.Conn, *http.Response, error) {
	q := url.Values{
		endpointproto.ParamEndpointID:       {"eice-0123456789abcdef0"},
		endpointproto.ParamRemotePort:       {strconv.Itoa(port)},
		endpointproto.ParamPrivateIPAddress: {target},
		"X-Amz-Signature":                   {"0123abcd"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "wss://"+h.addr+endpointproto.OpenTunnelPath+"?"+q.Encode(), &websocket.DialOptions{
		HTTPClient: h.client, HTTPHeader: http.Header{"User-Agent": {"aws-cli/2.15.0"}}})
}

func (h *harness) mustOpen(target string, port int) *websocket.Conn {
	h.t.Helper()
	c, _, err := h.open(target, port)
	if err != nil {
		h.t.Fatalf("opening a tunnel to %s:%d: %v", target, port, err)
	}
	h.t.Cleanup(func() { c.CloseNow() })
	return c
}

// refused opens a tunnel that must be refused and returns the response
// and its {"ErrorCode","Message"} body.
func (h *harness) refused(target string, port int) (*http.Response, string, string) {
	h.t.Helper()
	c, resp, err := h.open(target, port)
	if err == nil {
		c.CloseNow()
		h.t.Fatalf("a tunnel to %s:%d was opened; want a refusal", target, port)
	}
	if resp == nil {
		h.t.Fatalf("a tunnel to %s:%d failed without an HTTP answer: %v", target, port, err)
	}
	var body struct{ ErrorCode, Message string }
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		h.t.Fatalf("refusal body %q: %v", b, err)
	}
	return resp, body.ErrorCode, body.Message
}

// roundTrip sends msg through the tunnel to the echo target and reads it
// back.
func roundTrip(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, []byte(msg)); err != nil {
		t.Fatalf("writing to the tunnel: %v", err)
	}
	var got []byte
	for len(got) < len(msg) {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading from the tunnel (got %q so far): %v", got, err)
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("the tunnel sent a %v message", typ)
		}
		got = append(got, b...)
	}
	if string(got) != msg {
		t.Fatalf("the tunnel echoed %q, want %q", got, msg)
	}
}

// closedBy reads until the tunnel closes and returns the close frame.
func closedBy(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("the tunnel ended without a close frame: %v", err)
		}
		return ce
	}
}

func closeNormally(t *testing.T, c *websocket.Conn) {
	t.Helper()
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("closing the tunnel: %v", err)
	}
}

func TestListenTunnelCarriesBytes(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}, MaxConnections: 5, MaxTunnelDuration: 3600}})
	if h.join.Mode != endpointproto.ModeListen || h.join.DNSName != h.addr || len(h.join.CertPublicKey) == 0 {
		t.Errorf("join = %+v; want listen mode, DNSName %s and a public key", h.join, h.addr)
	}
	c, resp, err := h.open(echoIP, 22)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.Header.Get(tunnel.RequestIDHeader) != "tun-1" {
		t.Errorf("handshake %s = %q, want the tunnel id", tunnel.RequestIDHeader, resp.Header.Get(tunnel.RequestIDHeader))
	}
	authz := recv(t, h.srv.authzs, "the authorization")
	if authz.Method != http.MethodGet || !strings.HasPrefix(authz.RequestURI, endpointproto.OpenTunnelPath+"?") ||
		!strings.Contains(authz.RequestURI, "X-Amz-Signature=0123abcd") || authz.Host != h.addr ||
		authz.SourceIP != "127.0.0.1" || authz.UserAgent != "aws-cli/2.15.0" {
		t.Errorf("authorize request = %+v", authz)
	}
	roundTrip(t, c, "hello")
	roundTrip(t, c, strings.Repeat("x", 65000))
	closeNormally(t, c)
	rec := recv(t, h.srv.closed, "the close report")
	if rec.TunnelID != "tun-1" || rec.BytesIn != 65005 || rec.BytesOut != 65005 || rec.Cause != "client-closed" ||
		rec.Code != 1000 || rec.Reason != "done" {
		t.Errorf("close report = %+v", rec)
	}
	if strings.Contains(h.logs.String(), testCredential) {
		t.Error("the logs hold the join credential")
	}
}

func TestConnectionLimit(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}, MaxConnections: 3}})
	var held []*websocket.Conn
	for range 3 {
		c := h.mustOpen(echoIP, 22)
		roundTrip(t, c, "held")
		held = append(held, c)
	}
	for range 3 {
		recv(t, h.srv.authzs, "an authorization")
	}
	resp, code, msg := h.refused(echoIP, 22)
	if resp.StatusCode != http.StatusTooManyRequests || code != "TooManyTunnels" || !strings.Contains(msg, "limit of 3") ||
		resp.Header.Get(tunnel.RequestIDHeader) == "" {
		t.Errorf("4th tunnel: %d %s %q (request id %q)", resp.StatusCode, code, msg, resp.Header.Get(tunnel.RequestIDHeader))
	}
	select {
	case a := <-h.srv.authzs:
		t.Errorf("the refused tunnel was sent for authorization: %+v", a)
	default:
	}
	for i, c := range held {
		roundTrip(t, c, "still here "+strconv.Itoa(i))
	}
	// A slot comes back when a tunnel ends.
	closeNormally(t, held[0])
	recv(t, h.srv.closed, "the close report")
	c := h.mustOpen(echoIP, 22)
	roundTrip(t, c, "after")
	for _, c := range append(held[1:], c) {
		closeNormally(t, c)
	}
}

func TestConnectionLimitRace(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}, MaxConnections: 4}})
	type result struct {
		c    *websocket.Conn
		resp *http.Response
		err  error
	}
	results := make(chan result, 12)
	for range 12 {
		go func() {
			c, resp, err := h.open(echoIP, 22)
			results <- result{c, resp, err}
		}()
	}
	opened, refused := 0, 0
	for range 12 {
		r := recv(t, results, "a tunnel attempt")
		switch {
		case r.err == nil:
			opened++
			defer r.c.CloseNow()
		case r.resp != nil && r.resp.StatusCode == http.StatusTooManyRequests:
			refused++
		default:
			t.Errorf("tunnel attempt failed: %v", r.err)
		}
	}
	if opened != 4 || refused != 8 {
		t.Errorf("%d tunnels opened and %d refused; want 4 and 8", opened, refused)
	}
}

func TestAuthorizationRefused(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}})
	h.srv.mu.Lock()
	h.srv.decide = func(endpointproto.AuthorizeRequest) (endpointproto.AuthorizeResponse, string) {
		return endpointproto.AuthorizeResponse{Error: &endpointproto.TunnelError{Status: http.StatusForbidden, ErrorCode: "AccessDeniedException",
			Message: "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: ec2-instance-connect:OpenTunnel"}}, "req-denied-1"
	}
	h.srv.mu.Unlock()
	resp, code, msg := h.refused(echoIP, 22)
	if resp.StatusCode != http.StatusForbidden || code != "AccessDeniedException" || !strings.Contains(msg, "user/bob is not authorized") ||
		resp.Header.Get(tunnel.RequestIDHeader) != "req-denied-1" {
		t.Errorf("refusal: %d %s %q (request id %q)", resp.StatusCode, code, msg, resp.Header.Get(tunnel.RequestIDHeader))
	}
	// The slot was given back: the endpoint is not stuck at its limit.
	h.srv.mu.Lock()
	h.srv.decide = nil
	h.srv.mu.Unlock()
	c := h.mustOpen(echoIP, 22)
	roundTrip(t, c, "allowed now")
	closeNormally(t, c)
}

func TestAuthorizeUnavailable(t *testing.T) {
	h := start(t, options{})
	h.srv.mu.Lock()
	h.srv.broken = true
	h.srv.mu.Unlock()
	resp, code, msg := h.refused(echoIP, 22)
	if resp.StatusCode != http.StatusServiceUnavailable || code != "ServiceUnavailable" || strings.Contains(msg, "database") {
		t.Errorf("refusal: %d %s %q", resp.StatusCode, code, msg)
	}
}

func TestTargetFailures(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}, dialTimeout: 300 * time.Millisecond,
		ownAddrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}})
	for _, tc := range []struct {
		target string
		port   int
		status int
		code   string
		msg    string
	}{
		{refusedIP, 22, http.StatusBadGateway, "TargetUnreachable", "10.0.0.6:22"},
		{blackholed, 22, http.StatusGatewayTimeout, "TargetTimeout", "10.0.0.7:22 did not answer within 300ms"},
		{"127.0.0.1", 22, http.StatusForbidden, "TargetNotAllowed", "loopback"},
		{"169.254.169.254", 22, http.StatusForbidden, "TargetNotAllowed", "metadata"},
		{"10.0.0.9", 22, http.StatusForbidden, "TargetNotAllowed", "the endpoint itself"},
		{"192.168.1.5", 22, http.StatusForbidden, "TargetNotAllowed", "outside the endpoint's VPC"},
		{echoIP, 25, http.StatusForbidden, "TargetNotAllowed", "port 25 is not allowed"},
		{"not-an-ip", 22, http.StatusBadRequest, "InvalidTarget", "not an IP address"},
	} {
		start := time.Now()
		resp, code, msg := h.refused(tc.target, tc.port)
		if resp.StatusCode != tc.status || code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("tunnel to %s:%d: %d %s %q; want %d %s containing %q", tc.target, tc.port, resp.StatusCode, code, msg, tc.status, tc.code, tc.msg)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("tunnel to %s:%d took %s to be refused", tc.target, tc.port, d)
		}
		rec := recv(t, h.srv.closed, "the close report")
		if rec.Cause != causeSetupFailed || rec.BytesIn != 0 {
			t.Errorf("close report of the tunnel to %s = %+v", tc.target, rec)
		}
	}
}

func TestDeletion(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}})
	a, b := h.mustOpen(echoIP, 22), h.mustOpen(echoIP, 22)
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")
	gate := make(chan struct{})
	h.srv.mu.Lock()
	h.srv.closedGate = gate
	h.srv.mu.Unlock()

	h.srv.send(h.control, endpointproto.Control{Type: endpointproto.ControlDelete})
	for _, c := range []*websocket.Conn{a, b} {
		if ce := closedBy(t, c); ce.Code != websocket.StatusGoingAway || ce.Reason != ReasonDeleted {
			t.Errorf("tunnel closed with %d %q; want 1001 %q", ce.Code, ce.Reason, ReasonDeleted)
		}
	}
	rec := recv(t, h.srv.closed, "a close report")
	// The endpoint is still reporting (the gate holds it): a new tunnel is
	// refused, not left hanging.
	resp, code, msg := h.refused(echoIP, 22)
	if resp.StatusCode != http.StatusServiceUnavailable || code != "ServiceUnavailable" || !strings.Contains(msg, "deleted") {
		t.Errorf("tunnel after deletion: %d %s %q", resp.StatusCode, code, msg)
	}
	close(gate)
	recs := []endpointproto.Closed{rec, recv(t, h.srv.closed, "a close report")}
	for _, r := range recs {
		if r.Code != 1001 || r.Reason != ReasonDeleted || r.Cause != "canceled" {
			t.Errorf("close report = %+v", r)
		}
	}
	if m := recv(t, h.srv.fromEP, "the deleted message"); m.Type != endpointproto.ControlDeleted {
		t.Errorf("the endpoint sent %+v; want %s", m, endpointproto.ControlDeleted)
	}
	if err := recv(t, h.done, "Run to return"); !errors.Is(err, ErrDeleted) {
		t.Errorf("Run = %v, want ErrDeleted", err)
	}
	h.done <- nil // for the cleanup
}

// TestDeletedWhileAway: an endpoint whose deletion completed while its
// control connection was down learns it on reconnecting (410) and stops
// as if told to.
func TestDeletedWhileAway(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}})
	c := h.mustOpen(echoIP, 22)
	roundTrip(t, c, "before")
	h.srv.mu.Lock()
	h.srv.gone = true
	h.srv.mu.Unlock()
	h.control.CloseNow()
	if ce := closedBy(t, c); ce.Code != websocket.StatusGoingAway || ce.Reason != ReasonDeleted {
		t.Errorf("tunnel closed with %d %q; want 1001 %q", ce.Code, ce.Reason, ReasonDeleted)
	}
	if err := recv(t, h.done, "Run to return"); !errors.Is(err, ErrDeleted) {
		t.Errorf("Run = %v, want ErrDeleted", err)
	}
	h.done <- nil // for the cleanup
}

func TestGracefulShutdown(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}, grace: time.Minute})
	c := h.mustOpen(echoIP, 22)
	roundTrip(t, c, "before")
	stopping := h.logs.logged("shutting down: refusing new tunnels")
	h.cancel()
	recv(t, stopping, "the endpoint to start shutting down")
	resp, code, msg := h.refused(echoIP, 22)
	if resp.StatusCode != http.StatusServiceUnavailable || code != "ServiceUnavailable" || !strings.Contains(msg, "shutting down") {
		t.Errorf("tunnel during shutdown: %d %s %q", resp.StatusCode, code, msg)
	}
	// The live tunnel carries on through the grace period.
	roundTrip(t, c, "during grace")
	closeNormally(t, c)
	if rec := recv(t, h.srv.closed, "the close report"); rec.Cause != "client-closed" || rec.Code != 1000 {
		t.Errorf("close report = %+v", rec)
	}
	if err := recv(t, h.done, "Run to return"); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	h.done <- nil
}

func TestShutdownClosesTunnelsAfterGrace(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}, grace: 200 * time.Millisecond})
	c := h.mustOpen(echoIP, 22)
	roundTrip(t, c, "before")
	h.cancel()
	if ce := closedBy(t, c); ce.Code != websocket.StatusGoingAway || ce.Reason != ReasonShutdown {
		t.Errorf("tunnel closed with %d %q; want 1001 %q", ce.Code, ce.Reason, ReasonShutdown)
	}
	if rec := recv(t, h.srv.closed, "the close report"); rec.Code != 1001 || rec.Reason != ReasonShutdown || rec.BytesIn != 6 {
		t.Errorf("close report = %+v", rec)
	}
	if err := recv(t, h.done, "Run to return"); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	h.done <- nil
}

func TestRelayMode(t *testing.T) {
	h := start(t, options{mode: endpointproto.ModeRelay, settings: endpointproto.Settings{AllowedPorts: []int{22}, MaxConnections: 1}})
	if h.join.Mode != endpointproto.ModeRelay || h.join.DNSName != "" || len(h.join.CertPublicKey) != 0 {
		t.Errorf("join = %+v; want relay mode and no DNS name or key", h.join)
	}
	h.srv.send(h.control, endpointproto.Control{Type: endpointproto.ControlDial, Dial: h.srv.newTunnel(echoIP, 22, "198.51.100.7")})
	r := recv(t, h.srv.relays, "the relay dial-back")
	defer r.conn.CloseNow()
	if r.id != "tun-1" {
		t.Errorf("relay dial-back for tunnel %q, want tun-1", r.id)
	}
	roundTrip(t, r.conn, "through the relay")

	// The limit holds in relay mode too, and so does the dial guard.
	for _, tc := range []struct {
		target string
		status int
		code   string
	}{
		{echoIP, http.StatusTooManyRequests, "TooManyTunnels"},
	} {
		h.relayRefused(t, tc.target, tc.status, tc.code)
	}
	closeNormally(t, r.conn)
	if rec := recv(t, h.srv.closed, "the close report"); rec.TunnelID != "tun-1" || rec.BytesIn != 17 || rec.BytesOut != 17 || rec.Cause != "client-closed" {
		t.Errorf("close report = %+v", rec)
	}
	for _, tc := range []struct {
		target string
		status int
		code   string
	}{
		{"127.0.0.1", http.StatusForbidden, "TargetNotAllowed"},
		{refusedIP, http.StatusBadGateway, "TargetUnreachable"},
	} {
		h.relayRefused(t, tc.target, tc.status, tc.code)
	}
}

// relayRefused has the server send a relayed tunnel to target that the
// endpoint must refuse with status and code, and then report closed, so
// that the server gives back the place it counted for it.
func (h *harness) relayRefused(t *testing.T, target string, status int, code string) {
	t.Helper()
	tun := h.srv.newTunnel(target, 22, "198.51.100.7")
	h.srv.send(h.control, endpointproto.Control{Type: endpointproto.ControlDial, Dial: tun})
	if te := recv(t, h.srv.refusals, "the relay refusal"); te.Status != status || te.ErrorCode != code {
		t.Errorf("relay tunnel to %s refused with %+v; want %d %s", target, te, status, code)
	}
	if rec := recv(t, h.srv.closed, "the refused tunnel's close report"); rec.TunnelID != tun.ID || rec.Cause != "setup-failed" || rec.Reason == "" {
		t.Errorf("close report of the refused tunnel %s = %+v; want it setup-failed, with a reason", tun.ID, rec)
	}
}

func TestSettingsChange(t *testing.T) {
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}})
	changed := h.logs.logged("settings changed")
	h.srv.send(h.control, endpointproto.Control{Type: endpointproto.ControlSettings, Settings: &endpointproto.Settings{AllowedPorts: []int{5432}, MaxConnections: 1}})
	recv(t, changed, "the settings to apply")
	if resp, code, _ := h.refused(echoIP, 22); resp.StatusCode != http.StatusForbidden || code != "TargetNotAllowed" {
		t.Errorf("port 22 after the change: %d %s", resp.StatusCode, code)
	}
	recv(t, h.srv.closed, "the close report")
	c := h.mustOpen(echoIP, 5432)
	roundTrip(t, c, "postgres")
	if resp, code, _ := h.refused(echoIP, 5432); resp.StatusCode != http.StatusTooManyRequests || code != "TooManyTunnels" {
		t.Errorf("second tunnel with a limit of 1: %d %s", resp.StatusCode, code)
	}
	closeNormally(t, c)
}

func TestNotAWebSocket(t *testing.T) {
	h := start(t, options{})
	resp, err := h.client.Get("https://" + h.addr + endpointproto.OpenTunnelPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte("WebSocket")) {
		t.Errorf("plain GET: %d %s", resp.StatusCode, b)
	}
}

func TestJoinRefused(t *testing.T) {
	srv := newFakeServer(t, endpointproto.Settings{})
	ep, err := New(Config{Server: srv.ts.URL, Credential: "eice-0123456789abcdef0.wrong", HTTPClient: srv.ts.Client(),
		Mode: endpointproto.ModeRelay, OwnAddrs: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	err = ep.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unknown endpoint credential") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Run with a bad credential = %v", err)
	}
}
