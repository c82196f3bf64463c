package opentunnel

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/opentunnel/opentunneltest"
	"github.com/postern-dev/postern/tunnel"
)

const (
	testAKID    = "AKIAIOSFODNN7EXAMPLE"
	testSecret  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testRegion  = "eu-west-1"
	testEIC     = "eice-0123456789abcdef0"
	testTimeout = 20 * time.Second
)

func testCreds(token string) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret, SessionToken: token}, nil
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// verifyTunnelRequest checks an OpenTunnel handshake as an endpoint's
// server would and returns the tunnel's parameters.
func verifyTunnelRequest(ctx context.Context, r *http.Request) (Params, error) {
	if err := opentunneltest.Verify(ctx, r, testAKID, testSecret, testRegion); err != nil {
		return Params{}, err
	}
	return paramsOf(r.URL.Query()), nil
}

func paramsOf(q url.Values) Params {
	port, _ := strconv.Atoi(q.Get(endpointproto.ParamRemotePort))
	dur, _ := strconv.Atoi(q.Get(endpointproto.ParamMaxTunnelDuration))
	return Params{EndpointID: q.Get(endpointproto.ParamEndpointID), PrivateIP: q.Get(endpointproto.ParamPrivateIPAddress),
		RemotePort: port, MaxTunnelDuration: dur}
}

func newEndpoint(t *testing.T) *opentunneltest.Endpoint {
	return opentunneltest.NewEndpoint(t, testAKID, testSecret, testRegion)
}

// openTunnel presigns and dials a tunnel through e.
func openTunnel(ctx context.Context, e *opentunneltest.Endpoint) (tunnel.MessageConn, error) {
	u, err := Presign(ctx, testCreds(""), testRegion, e.DNSName, Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22})
	if err != nil {
		return nil, err
	}
	return Dial(ctx, u, e.TLS)
}

// countingWriter collects what it is given and says when it holds n bytes.
type countingWriter struct {
	mu   sync.Mutex
	b    []byte
	n    int
	full chan struct{}
}

func newCountingWriter(n int) *countingWriter {
	return &countingWriter{n: n, full: make(chan struct{})}
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := len(w.b)
	w.b = append(w.b, p...)
	if before < w.n && len(w.b) >= w.n {
		close(w.full)
	}
	return len(p), nil
}

func (w *countingWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.b...)
}

// lineWriter passes each line written to it on a channel.
type lineWriter struct {
	mu    sync.Mutex
	part  string
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 100)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part += string(p)
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.lines <- w.part[:i]
		w.part = w.part[i+1:]
	}
	return len(p), nil
}

// await returns the next line that contains want, failing the test after
// testTimeout.
func (w *lineWriter) await(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		select {
		case l := <-w.lines:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line containing %q within %v", want, testTimeout)
			return ""
		}
	}
}
