// Package opentunneltest provides a stand-in Instance Connect Endpoint for
// tests of OpenTunnel clients: a TLS server that verifies the presigned
// URL with the project's SigV4 verifier and pipes the tunnel to an echo
// target, with hooks to refuse the handshake or serve the WebSocket
// otherwise.
package opentunneltest

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/sigv4"
	"github.com/postern-dev/postern/tunnel"
)

// Refusal is how the endpoint answers a handshake it refuses.
type Refusal struct {
	Status    int
	Code      string
	Message   string
	RequestID string
}

// Endpoint is a running stand-in endpoint.
type Endpoint struct {
	*httptest.Server
	// DNSName is where clients reach it (127.0.0.1:PORT).
	DNSName string
	// TLS trusts its certificate; CABundle is the same as PEM, for
	// AWS_CA_BUNDLE.
	TLS      *tls.Config
	CABundle []byte
	// Target is the echo target tunnels go to, whatever they ask for.
	Target string

	// Refuse, when set, answers every valid handshake with it.
	Refuse *Refusal
	// Handle, when set, serves accepted tunnels instead of the pipe to
	// Target. q holds the OpenTunnel parameters.
	Handle func(ws *tunnel.WebSocket, q url.Values)

	accessKeyID, secret, region string

	mu       sync.Mutex
	queries  []url.Values
	sizes    []int
	failures []error
}

// NewEndpoint starts an endpoint that accepts URLs presigned by
// accessKeyID/secret for region. It is closed when the test ends.
func NewEndpoint(t *testing.T, accessKeyID, secret, region string) *Endpoint {
	t.Helper()
	e := &Endpoint{Target: EchoTarget(t), accessKeyID: accessKeyID, secret: secret, region: region}
	e.Server = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	// Clients that do not trust the certificate are tested on purpose.
	e.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.StartTLS()
	t.Cleanup(e.Close)
	e.DNSName = e.Listener.Addr().String()
	e.TLS = e.Client().Transport.(*http.Transport).TLSClientConfig
	e.CABundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Certificate().Raw})
	return e
}

// Verify checks an OpenTunnel handshake as an endpoint's server does: a
// presignature by accessKeyID for ec2-instance-connect in region, valid
// for 60 seconds, signed for the host it was sent to.
func Verify(ctx context.Context, r *http.Request, accessKeyID, secret, region string) error {
	v := sigv4.NewVerifier(func(_ context.Context, id string) (string, error) {
		if id == accessKeyID {
			return secret, nil
		}
		return "", postern.Errorf(postern.KindUnknownKey, "unknown key")
	})
	res, err := v.Verify(ctx, r, nil)
	switch {
	case err != nil:
		return err
	case !res.Presigned:
		return fmt.Errorf("not presigned")
	case res.Service != "ec2-instance-connect" || res.Region != region:
		return fmt.Errorf("signed for %s in %s", res.Service, res.Region)
	case res.Expires.Sub(res.SignedAt) != time.Minute:
		return fmt.Errorf("expires after %v, not 60 s", res.Expires.Sub(res.SignedAt))
	}
	return nil
}

func (e *Endpoint) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != endpointproto.OpenTunnelPath {
		http.NotFound(w, r)
		return
	}
	err := Verify(r.Context(), r, e.accessKeyID, e.secret, e.region)
	e.mu.Lock()
	if err != nil {
		e.failures = append(e.failures, err)
	}
	e.queries = append(e.queries, r.URL.Query())
	refuse := e.Refuse
	e.mu.Unlock()
	if err != nil {
		tunnel.WriteHandshakeError(w, http.StatusForbidden, "InvalidSignatureException", err.Error(), "req-sig")
		return
	}
	if refuse != nil {
		tunnel.WriteHandshakeError(w, refuse.Status, refuse.Code, refuse.Message, refuse.RequestID)
		return
	}
	ws, err := tunnel.Accept(w, r, "req-ok")
	if err != nil {
		return
	}
	if e.Handle != nil {
		e.Handle(ws, r.URL.Query())
		return
	}
	target, err := net.Dial("tcp", e.Target)
	if err != nil {
		ws.Close(tunnel.StatusInternalError, "the connection to the target failed")
		return
	}
	tunnel.Pipe(r.Context(), &sizeRecorder{MessageConn: ws, e: e}, target, tunnel.Limits{})
}

// Check fails the test if the endpoint refused a signature.
func (e *Endpoint) Check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.failures {
		t.Errorf("the endpoint refused a presigned URL: %v", err)
	}
}

// Queries returns the query of every handshake so far.
func (e *Endpoint) Queries() []url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]url.Values(nil), e.queries...)
}

// FrameSizes returns the size of every client frame piped so far.
func (e *Endpoint) FrameSizes() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.sizes...)
}

// sizeRecorder notes the size of every message the endpoint reads.
type sizeRecorder struct {
	tunnel.MessageConn
	e *Endpoint
}

func (r *sizeRecorder) Read(ctx context.Context) (tunnel.MessageType, []byte, error) {
	typ, b, err := r.MessageConn.Read(ctx)
	if err == nil {
		r.e.mu.Lock()
		r.e.sizes = append(r.e.sizes, len(b))
		r.e.mu.Unlock()
	}
	return typ, b, err
}

// EchoTarget listens on 127.0.0.1 and sends back what it reads, until the
// test ends.
func EchoTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}
