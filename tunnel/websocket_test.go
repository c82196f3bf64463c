package tunnel_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/tunnel/tunneltest"
)

func TestWebSocketConformance(t *testing.T) {
	checkLeaks(t)
	tunneltest.TestMessageConn(t, func(t *testing.T) (tunnel.MessageConn, tunnel.MessageConn) {
		cc := openWebSocket(t, clientOptions{})
		return cc.client, cc.endpoint
	})
}

// TestAcceptRefusesCompression: the handshake never agrees to
// permessage-deflate, whatever the client offers.
func TestAcceptRefusesCompression(t *testing.T) {
	checkLeaks(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := tunnel.Accept(w, r, "req-7")
		if err != nil {
			return
		}
		ws.Close(tunnel.StatusNormalClosure, "")
	}))
	defer srv.Close()
	c, resp, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{
		CompressionMode: websocket.CompressionContextTakeover,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Errorf("server agreed to extensions %q", ext)
	}
	if id := resp.Header.Get("x-amzn-RequestId"); id != "req-7" {
		t.Errorf("x-amzn-RequestId = %q", id)
	}
	c.Read(context.Background()) // the server's close frame
}

// TestWebSocketFragmentedOversizedMessage: the size limit applies to
// messages, however they are fragmented.
func TestWebSocketFragmentedOversizedMessage(t *testing.T) {
	checkLeaks(t)
	s := startSession(t, transports[1], context.Background(), tunnel.Limits{}, clientOptions{})
	w, err := s.raw.Writer(context.Background(), websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 40000))
	w.Write(make([]byte, 30000))
	w.Close()
	ce := readUntilClose(t, s.client)
	if ce.Code != tunnel.StatusMessageTooBig {
		t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
	}
	if n, _ := io.Copy(io.Discard, s.target); n != 0 {
		t.Errorf("target got %d bytes of the oversized message", n)
	}
	wantResult(t, s.wait(t), tunnel.CauseProtocol, tunnel.StatusMessageTooBig, "frame exceeds the maximum size of 65000 bytes")
}
