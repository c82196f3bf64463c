package tunnel_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/tunnel/tunneltest"
)

// A transport makes message connections between a test's client and the
// endpoint side, where Pipe runs.
type transport struct {
	name string
	open func(t testing.TB, o clientOptions) *clientConn
}

type clientOptions struct {
	onPing func()                              // called for each ping the client answers
	tcp    func(endpoint, target *net.TCPConn) // adjusts the TCP connection before Pipe starts
	pings  chan<- error                        // receives the outcome of Pipe's pings, when there is room
}

type clientConn struct {
	client   tunnel.MessageConn // the test's end
	endpoint tunnel.MessageConn // Pipe's end
	vanish   func()             // drops the client without a close frame
	raw      *websocket.Conn    // the client's WebSocket, when there is one
}

var transports = []transport{
	{"memory", openMemory},
	{"websocket", openWebSocket},
}

// forEachTransport runs f as a subtest per transport, each checked for
// leaked goroutines and file descriptors.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			checkLeaks(t)
			f(t, tr)
		})
	}
}

func openMemory(t testing.TB, o clientOptions) *clientConn {
	client, endpoint := tunneltest.Pair()
	client.OnPing = o.onPing
	t.Cleanup(func() { client.CloseNow(); endpoint.CloseNow() })
	return &clientConn{client: client, endpoint: endpoint, vanish: func() { client.CloseNow() }}
}

const testRequestID = "3f7a7c2e-5b0b-4c5e-9a4e-0d6f2c1b9e11"

// openWebSocket serves tunnel.Accept over HTTP on loopback and dials it
// with coder/websocket, keeping hold of the client's TCP connection so that
// the client can vanish from under its WebSocket.
func openWebSocket(t testing.TB, o clientOptions) *clientConn {
	t.Helper()
	accepted := make(chan *tunnel.WebSocket, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := tunnel.Accept(w, r, testRequestID)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- ws
	}))
	t.Cleanup(srv.Close)
	dialed := make(chan net.Conn, 1)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			dialed <- c
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}}
	if o.onPing != nil {
		opts.OnPingReceived = func(context.Context, []byte) bool { o.onPing(); return true }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/openTunnel", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("x-amzn-RequestId"); got != testRequestID {
		t.Errorf("handshake x-amzn-RequestId = %q, want %q", got, testRequestID)
	}
	client := tunnel.NewWebSocket(c, 64<<10)
	endpoint := <-accepted
	raw := <-dialed
	t.Cleanup(func() { client.CloseNow(); endpoint.CloseNow() })
	return &clientConn{client: client, endpoint: endpoint, vanish: func() { raw.Close() }, raw: c}
}

// tcpPair returns both ends of a loopback TCP connection: the endpoint's,
// for Pipe, and the target's, for the test.
func tcpPair(t testing.TB) (endpoint, target *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// A session is a tunnel under test: Pipe between a client and a target.
type session struct {
	*clientConn
	conn   *net.TCPConn // Pipe's end of the target connection
	target *net.TCPConn
	result chan tunnel.Result
}

func startSession(t testing.TB, tr transport, ctx context.Context, lim tunnel.Limits, o clientOptions) *session {
	t.Helper()
	cc := tr.open(t, o)
	conn, target := tcpPair(t)
	if o.tcp != nil {
		o.tcp(conn, target)
	}
	s := &session{clientConn: cc, conn: conn, target: target, result: make(chan tunnel.Result, 1)}
	endpoint := cc.endpoint
	if o.pings != nil {
		endpoint = pingSpy{endpoint, o.pings}
	}
	go func() { s.result <- tunnel.Pipe(ctx, endpoint, conn, lim) }()
	return s
}

// pingSpy reports the outcome of each ping.
type pingSpy struct {
	tunnel.MessageConn
	results chan<- error
}

func (s pingSpy) Ping(ctx context.Context) error {
	err := s.MessageConn.Ping(ctx)
	select {
	case s.results <- err:
	default:
	}
	return err
}

// wait returns Pipe's result, having checked that Pipe closed both of its
// connections.
func (s *session) wait(t testing.TB) tunnel.Result {
	t.Helper()
	var r tunnel.Result
	select {
	case r = <-s.result:
	case <-time.After(30 * time.Second):
		t.Fatal("Pipe did not return")
	}
	if err := s.conn.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Pipe left the target connection open (%v)", err)
	}
	if err := s.endpoint.Write(context.Background(), tunnel.MessageBinary, nil); err == nil {
		t.Error("Pipe left the client connection open")
	}
	return r
}

// readUntilClose reads messages, dropping them, until the close frame.
func readUntilClose(t *testing.T, c tunnel.MessageConn) *tunnel.CloseError {
	t.Helper()
	ce, err := readClose(c)
	if err != nil {
		t.Fatalf("client: %v, want a close frame", err)
	}
	return ce
}

// readClose is readUntilClose for goroutines other than the test's.
func readClose(c tunnel.MessageConn) (*tunnel.CloseError, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err == nil {
			continue
		}
		var ce *tunnel.CloseError
		if !errors.As(err, &ce) {
			return nil, err
		}
		return ce, nil
	}
}

func wantResult(t *testing.T, r tunnel.Result, cause tunnel.Cause, code tunnel.StatusCode, reason string) {
	t.Helper()
	if r.Cause != cause || r.CloseCode != code || r.Reason != reason {
		t.Errorf("result: %v, %d %q; want %v, %d %q (err %v)", r.Cause, r.CloseCode, r.Reason, cause, code, reason, r.Err)
	}
	if r.Duration <= 0 {
		t.Errorf("result: duration %v", r.Duration)
	}
}
