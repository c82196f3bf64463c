package endpoint

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/dialguard"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/tunnel"
)

const testCredential = "eice-0123456789abcdef0.s3cr3t-join-credential"

// fakeServer implements the server's side of endpointproto for tests:
// join (with a certificate from a test CA), the control WebSocket,
// scripted authorization, captured close records and relay dial-backs.
type fakeServer struct {
	t      *testing.T
	ts     *httptest.Server
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	roots  *x509.CertPool // trusts the CA that certifies listen endpoints
	join   endpointproto.JoinResponse
	tunnel atomic.Int64 // numbers authorized tunnels

	joins    chan endpointproto.JoinRequest
	controls chan *websocket.Conn       // each control connection the endpoint opens
	fromEP   chan endpointproto.Control // messages the endpoint sends on control
	authzs   chan endpointproto.AuthorizeRequest
	closed   chan endpointproto.Closed
	relays   chan relayConn                 // relay dial-backs that carry a tunnel
	refusals chan endpointproto.TunnelError // relay dial-backs that say why not

	mu sync.Mutex
	// decide, when set, answers authorizations instead of allowing them.
	decide func(endpointproto.AuthorizeRequest) (endpointproto.AuthorizeResponse, string)
	// broken, when set, makes authorization fail as a broken server would.
	broken bool
	// gone, when set, answers control connections 410: the endpoint's
	// deletion completed while it was away.
	gone bool
	// closedGate, when set, holds each close report's answer until it is
	// closed (the record is captured first).
	closedGate chan struct{}
}

type relayConn struct {
	id   string
	conn *websocket.Conn
}

func newFakeServer(t *testing.T, settings endpointproto.Settings) *fakeServer {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test endpoint CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	f := &fakeServer{
		t: t, ca: ca, caKey: caKey, roots: x509.NewCertPool(),
		join: endpointproto.JoinResponse{EndpointID: "eice-0123456789abcdef0", VPCID: "vpc-1", SubnetID: "subnet-1",
			VPCCIDRs: []string{"10.0.0.0/16"}, Region: "us-east-1", Settings: settings},
		joins: make(chan endpointproto.JoinRequest, 10), controls: make(chan *websocket.Conn, 10),
		fromEP: make(chan endpointproto.Control, 10), authzs: make(chan endpointproto.AuthorizeRequest, 100),
		closed: make(chan endpointproto.Closed, 100), relays: make(chan relayConn, 10),
		refusals: make(chan endpointproto.TunnelError, 10),
	}
	f.roots.AddCert(ca)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+endpointproto.JoinPath, f.authed(f.handleJoin))
	mux.HandleFunc("GET "+endpointproto.ControlPath, f.authed(f.handleControl))
	mux.HandleFunc("POST "+endpointproto.AuthorizePath, f.authed(f.handleAuthorize))
	mux.HandleFunc("POST "+endpointproto.ClosedPath, f.authed(f.handleClosed))
	mux.HandleFunc("GET "+endpointproto.RelayPath, f.authed(f.handleRelay))
	f.ts = httptest.NewUnstartedServer(mux)
	f.ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fakeServer) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testCredential {
			writeJSON(w, http.StatusUnauthorized, endpointproto.ErrorResponse{Code: "Unauthorized", Message: "unknown endpoint credential"})
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v)
}

func (f *fakeServer) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req endpointproto.JoinRequest
	if err := readJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "InvalidRequest", Message: err.Error()})
		return
	}
	f.joins <- req
	resp := f.join
	resp.DNSName = req.DNSName
	if len(req.CertPublicKey) > 0 {
		pub, err := x509.ParsePKIXPublicKey(req.CertPublicKey)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "InvalidRequest", Message: err.Error()})
			return
		}
		host, _, err := net.SplitHostPort(req.DNSName)
		if err != nil {
			host = req.DNSName
		}
		leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if ip := net.ParseIP(host); ip != nil {
			leaf.IPAddresses = []net.IP{ip}
		} else {
			leaf.DNSNames = []string{host}
		}
		der, err := x509.CreateCertificate(rand.Reader, leaf, f.ca, pub, f.caKey)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, endpointproto.ErrorResponse{Code: "Internal", Message: err.Error()})
			return
		}
		resp.Certificate = [][]byte{der, f.ca.Raw}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (f *fakeServer) handleControl(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	gone := f.gone
	f.mu.Unlock()
	if gone {
		writeJSON(w, http.StatusGone, endpointproto.ErrorResponse{Code: "IncorrectState", Message: "Instance Connect Endpoint eice-0123456789abcdef0 was deleted"})
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	f.controls <- c
	for {
		_, data, err := c.Read(context.Background())
		if err != nil {
			return
		}
		var m endpointproto.Control
		if json.Unmarshal(data, &m) == nil {
			f.fromEP <- m
		}
	}
}

// send sends a control message on connection c.
func (f *fakeServer) send(c *websocket.Conn, m endpointproto.Control) {
	f.t.Helper()
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		f.t.Fatalf("sending control message %s: %v", m.Type, err)
	}
}

func (f *fakeServer) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	var req endpointproto.AuthorizeRequest
	if err := readJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "InvalidRequest", Message: err.Error()})
		return
	}
	f.authzs <- req
	f.mu.Lock()
	decide, broken := f.decide, f.broken
	f.mu.Unlock()
	if broken {
		writeJSON(w, http.StatusInternalServerError, endpointproto.ErrorResponse{Code: "Internal", Message: "database is locked"})
		return
	}
	if decide != nil {
		resp, requestID := decide(req)
		if requestID != "" {
			w.Header().Set(tunnel.RequestIDHeader, requestID)
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	u, err := url.ParseRequestURI(req.RequestURI)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "InvalidRequest", Message: err.Error()})
		return
	}
	q := u.Query()
	port, _ := strconv.Atoi(q.Get(endpointproto.ParamRemotePort))
	writeJSON(w, http.StatusOK, endpointproto.AuthorizeResponse{Allowed: true, Tunnel: f.newTunnel(q.Get(endpointproto.ParamPrivateIPAddress), port, req.SourceIP)})
}

func (f *fakeServer) newTunnel(target string, port int, source string) *endpointproto.Tunnel {
	return &endpointproto.Tunnel{ID: fmt.Sprintf("tun-%d", f.tunnel.Add(1)), Target: target, RemotePort: port,
		MaxDuration: 3600, Caller: "arn:aws:iam::123456789012:user/alice", SourceIP: source}
}

func (f *fakeServer) handleClosed(w http.ResponseWriter, r *http.Request) {
	var c endpointproto.Closed
	if err := readJSON(r, &c); err != nil {
		writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "InvalidRequest", Message: err.Error()})
		return
	}
	f.closed <- c
	f.mu.Lock()
	gate := f.closedGate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeServer) handleRelay(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("tunnel")
	if h := r.Header.Get(endpointproto.TunnelErrorHeader); h != "" {
		var te endpointproto.TunnelError
		if err := json.Unmarshal([]byte(h), &te); err != nil {
			f.t.Errorf("relay dial-back for %s carries a %s that is not JSON: %q", id, endpointproto.TunnelErrorHeader, h)
		}
		f.refusals <- te
		writeJSON(w, http.StatusConflict, endpointproto.ErrorResponse{Code: "TunnelFailed", Message: te.Message})
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	f.relays <- relayConn{id: id, conn: c}
}

// recv receives from ch or fails the test after a generous bound.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// targets stands test targets on loopback for VPC addresses.
type targets struct {
	echo    string // 10.0.0.5: echoes what it reads, then closes
	refused string // 10.0.0.6: nothing listens
	// 10.0.0.7 never answers.
}

const (
	echoIP     = "10.0.0.5"
	refusedIP  = "10.0.0.6"
	blackholed = "10.0.0.7"
)

func newTargets(t *testing.T) *targets {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := closed.Addr().String()
	closed.Close()
	return &targets{echo: ln.Addr().String(), refused: refused}
}

// dial is the endpoint's test dialer: the endpoint has already checked
// the target against policy; this checks again that it did, then connects
// to the loopback stand-in.
func (tg *targets) dial(ctx context.Context, policy dialguard.Policy, addr netip.Addr, port uint16) (net.Conn, error) {
	if err := policy.Check(addr, port); err != nil {
		return nil, fmt.Errorf("the endpoint dialled %s:%d, which its policy refuses: %w", addr, port, err)
	}
	var d net.Dialer
	switch addr.String() {
	case echoIP:
		return d.DialContext(ctx, "tcp", tg.echo)
	case refusedIP:
		return d.DialContext(ctx, "tcp", tg.refused)
	case blackholed:
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	}
	return nil, errors.New("no test target at " + addr.String())
}

// logBuffer keeps the endpoint's logs for a failing test and lets a test
// wait for a message to be logged.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	waiters map[string]chan struct{}
	seen    map[string]bool
}

func newLogBuffer(t *testing.T) (*logBuffer, *slog.Logger) {
	lb := &logBuffer{waiters: map[string]chan struct{}{}, seen: map[string]bool{}}
	t.Cleanup(func() {
		if t.Failed() {
			lb.mu.Lock()
			t.Logf("endpoint logs:\n%s", lb.buf.String())
			lb.mu.Unlock()
		}
	})
	return lb, slog.New(&logHandler{lb: lb, h: slog.NewTextHandler(lockedWriter{lb}, &slog.HandlerOptions{Level: slog.LevelDebug})})
}

// logged returns a channel closed once msg has been logged.
func (lb *logBuffer) logged(msg string) <-chan struct{} {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	ch, ok := lb.waiters[msg]
	if !ok {
		ch = make(chan struct{})
		lb.waiters[msg] = ch
		if lb.seen[msg] {
			close(ch)
		}
	}
	return ch
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.String()
}

type lockedWriter struct{ lb *logBuffer }

// Write is called by the text handler with lb.mu held (see logHandler).
func (w lockedWriter) Write(p []byte) (int, error) { return w.lb.buf.Write(p) }

type logHandler struct {
	lb *logBuffer
	h  slog.Handler
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	h.lb.mu.Lock()
	defer h.lb.mu.Unlock()
	err := h.h.Handle(ctx, r)
	if !h.lb.seen[r.Message] {
		h.lb.seen[r.Message] = true
		if ch, ok := h.lb.waiters[r.Message]; ok {
			close(ch)
		}
	}
	return err
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{lb: h.lb, h: h.h.WithAttrs(as)}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{lb: h.lb, h: h.h.WithGroup(name)}
}
