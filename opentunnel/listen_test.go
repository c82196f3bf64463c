package opentunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/postern-dev/postern/tunnel"
)

// TestListener serves local connections, one tunnel (and one signature)
// each, and refuses connections over the limit until a tunnel closes.
func TestListener(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	srv := newEndpoint(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := newLineWriter()
	var opened atomic.Int32
	l := &Listener{
		Open: func(ctx context.Context) (tunnel.MessageConn, error) {
			opened.Add(1)
			return openTunnel(ctx, srv)
		},
		MaxConnections: 1,
		Log:            log,
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve(ctx, ln) }()

	a := dialLocal(t, ln.Addr().String())
	echo(t, a, "through the first tunnel")
	log.await(t, "[1] Accepted")

	// Over the limit: closed at once, with a message.
	b := dialLocal(t, ln.Addr().String())
	if n, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection over the limit read %d bytes, %v; want EOF", n, err)
	}
	if l := log.await(t, "[2] Refused"); !strings.Contains(l, "--max-websocket-connections") {
		t.Errorf("the refusal %q does not name the limit", l)
	}

	// Once the first tunnel is closed there is room again.
	a.Close()
	log.await(t, "[1] Tunnel closed")
	c := dialLocal(t, ln.Addr().String())
	echo(t, c, "through the third")
	log.await(t, "[3] Accepted")

	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v after its context ended", err)
	}
	// Serve closed the tunnel and the connection on its way out.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the local connection is still open after Serve returned")
	}
	if n := opened.Load(); n != 2 {
		t.Errorf("%d tunnels were opened, want 2", n)
	}
	srv.Check(t)
	if n := len(srv.Queries()); n != 2 {
		t.Errorf("the endpoint saw %d handshakes, want 2", n)
	}
}

func TestListenerOpenFails(t *testing.T) {
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := newLineWriter()
	l := &Listener{
		Open: func(ctx context.Context) (tunnel.MessageConn, error) {
			return nil, errors.New("the endpoint refused the tunnel: AccessDeniedException")
		},
		Log: log,
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve(ctx, ln) }()
	a := dialLocal(t, ln.Addr().String())
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read = %v, want EOF when the tunnel cannot open", err)
	}
	log.await(t, "[1] Cannot open the tunnel: the endpoint refused the tunnel: AccessDeniedException")
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func dialLocal(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(msg))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("echo: read %q, %v; want %q", b, err, msg)
	}
}
