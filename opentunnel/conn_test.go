package opentunnel

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/tunnel/tunneltest"
)

// TestConn: a tunnel as a net.Conn carries bytes both ways in binary
// frames; closing the conn closes the tunnel normally, and the endpoint's
// close ends the conn's reads and says why.
func TestConn(t *testing.T) {
	ctx := testContext(t)
	t.Run("ClientCloses", func(t *testing.T) {
		client, endpoint := tunneltest.Pair()
		conn, ended := Conn(client)
		go conn.Write([]byte("ping"))
		typ, b, err := endpoint.Read(ctx)
		if err != nil || typ != tunnel.MessageBinary || string(b) != "ping" {
			t.Fatalf("the endpoint read %v %q %v", typ, b, err)
		}
		if err := endpoint.Write(ctx, tunnel.MessageBinary, []byte("pong")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "pong" {
			t.Fatalf("the conn read %q %v", buf[:n], err)
		}
		conn.Close()
		_, _, err = endpoint.Read(ctx)
		var ce *tunnel.CloseError
		if !errors.As(err, &ce) || ce.Code != tunnel.StatusNormalClosure {
			t.Fatalf("after the conn closed the endpoint read %v, want close 1000", err)
		}
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("ended = %v, want nil", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("the relay did not end")
		}
	})
	t.Run("EndpointCloses", func(t *testing.T) {
		client, endpoint := tunneltest.Pair()
		conn, ended := Conn(client)
		defer conn.Close()
		go endpoint.Close(tunnel.StatusPolicyViolation, "maximum tunnel duration of 5s reached")
		if _, err := conn.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
			t.Errorf("the conn read %v after the endpoint closed, want EOF", err)
		}
		select {
		case err := <-ended:
			var ce *ClosedError
			if !errors.As(err, &ce) || ce.Code != int(tunnel.StatusPolicyViolation) || ce.Reason != "maximum tunnel duration of 5s reached" {
				t.Errorf("ended = %v, want the endpoint's close", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("the relay did not end")
		}
	})
}
