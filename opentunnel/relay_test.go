package opentunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/opentunnel/opentunneltest"
	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/tunnel/tunneltest"
)

// TestRelayEcho opens a tunnel through a TLS endpoint that verifies the
// presigned URL, carries bytes both ways to an echo target, and ends
// normally when the input ends.
func TestRelayEcho(t *testing.T) {
	ctx := testContext(t)
	srv := newEndpoint(t)
	ws, err := openTunnel(ctx, srv)
	if err != nil {
		t.Fatalf("open the tunnel: %v", err)
	}
	srv.Check(t)

	data := make([]byte, 300_000)
	rand.Read(data)
	inR, inW := io.Pipe()
	out := newCountingWriter(len(data))
	done := make(chan error, 1)
	go func() { done <- Relay(ctx, ws, inR, out) }()
	go func() {
		// Big writes, so that Relay reads whole frames' worth at a time.
		for b := data; len(b) > 0; {
			n := min(len(b), 100_000)
			if _, err := inW.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	}()
	select {
	case <-out.full:
	case err := <-done:
		t.Fatalf("Relay returned %v before the echo came back", err)
	case <-ctx.Done():
		t.Fatal("the echo did not come back")
	}
	// The input ends only now: the tunnel's end drops what is in flight.
	inW.Close()
	if err := <-done; err != nil {
		t.Fatalf("Relay = %v, want nil after the input ended", err)
	}
	if !bytes.Equal(out.bytes(), data) {
		t.Fatalf("the echo differs from what was sent (%d bytes, want %d)", len(out.bytes()), len(data))
	}

	if qs := srv.Queries(); len(qs) != 1 || paramsOf(qs[0]) != (Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22}) {
		t.Errorf("the endpoint saw %v", qs)
	}
	biggest := 0
	for _, n := range srv.FrameSizes() {
		biggest = max(biggest, n)
	}
	if biggest != MaxFrame {
		t.Errorf("the largest client frame was %d bytes, want exactly %d", biggest, MaxFrame)
	}
}

func TestDialRefused(t *testing.T) {
	ctx := testContext(t)
	srv := newEndpoint(t)
	srv.Refuse = &opentunneltest.Refusal{Status: 403, Code: "AccessDeniedException",
		Message: "User arn:aws:iam::123456789012:user/bob is not authorized to perform ec2-instance-connect:OpenTunnel", RequestID: "req-42"}
	_, err := openTunnel(ctx, srv)
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("Dial = %v, want a *HandshakeError", err)
	}
	if r := srv.Refuse; *he != (HandshakeError{StatusCode: r.Status, ErrorCode: r.Code, Message: r.Message, RequestID: r.RequestID}) {
		t.Errorf("Dial = %+v, want %+v", *he, *r)
	}
	msg := err.Error()
	for _, want := range []string{"AccessDeniedException", "not authorized to perform ec2-instance-connect:OpenTunnel", "HTTP 403", "req-42"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "X-Amz-Signature") {
		t.Errorf("the error quotes the signature: %q", msg)
	}
}

func TestDialBadSignature(t *testing.T) {
	ctx := testContext(t)
	srv := newEndpoint(t)
	u, err := Presign(ctx, testCreds(""), testRegion, srv.DNSName, Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(ctx, strings.Replace(u, "remotePort=22", "remotePort=23", 1), srv.TLS)
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != 403 || he.ErrorCode != "InvalidSignatureException" || he.RequestID != "req-sig" {
		t.Fatalf("Dial with a tampered URL = %v, want InvalidSignatureException (HTTP 403)", err)
	}
}

func TestDialUnreachable(t *testing.T) {
	ctx := testContext(t)
	srv := newEndpoint(t)
	u, err := Presign(ctx, testCreds(""), testRegion, srv.DNSName, Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22})
	if err != nil {
		t.Fatal(err)
	}
	// No trusted CA: the TLS handshake fails.
	_, err = Dial(ctx, u, nil)
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("Dial without the CA = %v, want a *DialError", err)
	}
	if msg := err.Error(); strings.Contains(msg, "Signature") || !strings.Contains(msg, "wss://"+srv.DNSName+"/openTunnel") {
		t.Errorf("Dial's error %q should name the endpoint without the URL's query", msg)
	}
}

// TestRelayEndpointCloses: the endpoint's close ends Relay, with an
// error that gives its reason unless the code is 1000.
func TestRelayEndpointCloses(t *testing.T) {
	for _, tc := range []struct {
		code   tunnel.StatusCode
		reason string
		want   string // Relay's error; "" for nil
	}{
		{tunnel.StatusPolicyViolation, "maximum tunnel duration of 60s reached",
			"tunnel closed by the endpoint: maximum tunnel duration of 60s reached (code 1008)"},
		{tunnel.StatusInternalError, "", "tunnel closed by the endpoint (code 1011)"},
		{tunnel.StatusNormalClosure, "target closed the connection", ""},
	} {
		ctx := testContext(t)
		srv := newEndpoint(t)
		srv.Handle = func(ws *tunnel.WebSocket, _ url.Values) {
			ws.Write(context.Background(), tunnel.MessageBinary, []byte("partial"))
			ws.Close(tc.code, tc.reason)
		}
		ws, err := openTunnel(ctx, srv)
		if err != nil {
			t.Fatal(err)
		}
		inR, inW := io.Pipe()
		defer inW.Close()
		var out bytes.Buffer
		err = Relay(ctx, ws, inR, &out)
		var ce *ClosedError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("close %d: Relay = %v, want nil", tc.code, err)
		case tc.want != "" && (!errors.As(err, &ce) || ce.Code != int(tc.code) || err.Error() != tc.want):
			t.Errorf("close %d: Relay = %v, want %q", tc.code, err, tc.want)
		}
		if out.String() != "partial" {
			t.Errorf("close %d: output %q, want what the endpoint sent before it closed", tc.code, out.String())
		}
	}
}

func TestRelayTextFrame(t *testing.T) {
	ctx := testContext(t)
	srv := newEndpoint(t)
	closed := make(chan *tunnel.CloseError, 1)
	srv.Handle = func(ws *tunnel.WebSocket, _ url.Values) {
		ws.Write(context.Background(), tunnel.MessageText, []byte("hello"))
		_, _, err := ws.Read(context.Background())
		ce, _ := err.(*tunnel.CloseError)
		closed <- ce
	}
	ws, err := openTunnel(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	defer inW.Close()
	if err := Relay(ctx, ws, inR, io.Discard); err == nil || !strings.Contains(err.Error(), "text frame") {
		t.Fatalf("Relay = %v, want a text frame error", err)
	}
	if ce := <-closed; ce == nil || ce.Code != tunnel.StatusUnsupportedData {
		t.Errorf("the endpoint saw %v, want a close with code 1003", ce)
	}
}

// The relay over an in-memory pair: frame sizes, close codes, and
// cancellation.
func TestRelayMemConn(t *testing.T) {
	t.Run("frames and close", func(t *testing.T) {
		ctx := testContext(t)
		client, server := tunneltest.Pair()
		data := make([]byte, 3*MaxFrame+17)
		rand.Read(data)
		done := make(chan error, 1)
		go func() { done <- Relay(ctx, client, bytes.NewReader(data), io.Discard) }()
		var got []byte
		for {
			typ, b, err := server.Read(ctx)
			if err != nil {
				var ce *tunnel.CloseError
				if !errors.As(err, &ce) || ce.Code != tunnel.StatusNormalClosure {
					t.Fatalf("server Read = %v, want close 1000 at the input's end", err)
				}
				break
			}
			if typ != tunnel.MessageBinary || len(b) > MaxFrame {
				t.Fatalf("a %v frame of %d bytes", typ, len(b))
			}
			got = append(got, b...)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("the server got %d bytes, want %d", len(got), len(data))
		}
		if err := <-done; err != nil {
			t.Fatalf("Relay = %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testContext(t))
		client, server := tunneltest.Pair()
		inR, inW := io.Pipe()
		defer inW.Close()
		done := make(chan error, 1)
		go func() { done <- Relay(ctx, client, inR, io.Discard) }()
		cancel()
		_, _, err := server.Read(testContext(t))
		var ce *tunnel.CloseError
		if !errors.As(err, &ce) || ce.Code != tunnel.StatusGoingAway {
			t.Fatalf("server Read = %v, want close 1001", err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Relay = %v, want context.Canceled", err)
			}
		case <-time.After(testTimeout):
			t.Fatal("Relay did not return after its context ended")
		}
	})
	t.Run("output fails", func(t *testing.T) {
		ctx := testContext(t)
		client, server := tunneltest.Pair()
		inR, inW := io.Pipe()
		defer inW.Close()
		done := make(chan error, 1)
		go func() { done <- Relay(ctx, client, inR, failingWriter{}) }()
		if err := server.Write(ctx, tunnel.MessageBinary, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_, _, err := server.Read(ctx)
		var ce *tunnel.CloseError
		if !errors.As(err, &ce) || ce.Code != tunnel.StatusNormalClosure {
			t.Fatalf("server Read = %v, want close 1000 when the output is gone", err)
		}
		if err := <-done; err == nil || !strings.Contains(err.Error(), "broken pipe") {
			t.Fatalf("Relay = %v, want the output's error", err)
		}
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }
