package tunnel_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/postern-dev/postern/tunnel"
)

// rawSession is a tunnel (Accept, then Pipe to a loopback target) whose
// client is a bare TCP connection that writes WebSocket frames by hand.
type rawSession struct {
	client net.Conn
	got    chan []byte        // what the target received, once it saw EOF
	res    chan tunnel.Result // Pipe's result
}

func startRaw(t *testing.T) *rawSession {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &rawSession{got: make(chan []byte, 1), res: make(chan tunnel.Result, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		s.got <- b
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tcp, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		ws, err := tunnel.Accept(w, r, "req")
		if err != nil {
			tcp.Close()
			return
		}
		s.res <- tunnel.Pipe(context.Background(), ws, tcp, tunnel.Limits{PingInterval: -1, DrainTimeout: time.Second})
	}))
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /openTunnel HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	s.client = c
	return s
}

// frame writes the head of a final, masked binary frame that declares
// declared payload bytes (under 126), then payload as is (mask key zero).
func (s *rawSession) frame(declared int, payload []byte) {
	s.client.Write(append([]byte{0x80 | 0x2, 0x80 | byte(declared), 0, 0, 0, 0}, payload...))
}

// A client that vanishes in the middle of a frame has sent no message:
// the part that arrived must not reach the target as if it were one.
func TestPipeTruncatedFrameNotDelivered(t *testing.T) {
	s := startRaw(t)
	s.frame(100, []byte("partial-data"))
	s.client.Close()
	res := <-s.res
	if got := <-s.got; len(got) != 0 || res.BytesFromClient != 0 {
		t.Errorf("the target received %q (%d bytes counted from the client) of a frame that never ended", got, res.BytesFromClient)
	}
	if res.Cause != tunnel.CauseClientLost {
		t.Errorf("cause %s, want %s", res.Cause, tunnel.CauseClientLost)
	}
}
