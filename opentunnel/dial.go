package opentunnel

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/tunnel"
)

// HandshakeTimeout bounds the TLS and WebSocket handshake of Dial.
const HandshakeTimeout = 30 * time.Second

// maxServerMessage is the largest frame accepted from an endpoint.
// Postern's endpoints send at most 32 KiB; the margin is for others.
const maxServerMessage = 1 << 20

// UserAgent names postern's own client in the endpoint's audit record.
const UserAgent = "postern-cli open-tunnel"

// HandshakeError is an endpoint's refusal to open a tunnel: the HTTP
// status of its answer and the AWS error in its JSON body
// {"ErrorCode","Message"}.
type HandshakeError struct {
	StatusCode int
	ErrorCode  string
	Message    string
	RequestID  string // x-amzn-RequestId, to quote to an administrator
}

func (e *HandshakeError) Error() string {
	var b strings.Builder
	b.WriteString("the endpoint refused the tunnel: ")
	switch {
	case e.ErrorCode != "" && e.Message != "":
		b.WriteString(e.ErrorCode + ": " + e.Message)
	case e.ErrorCode != "":
		b.WriteString(e.ErrorCode)
	case e.Message != "":
		b.WriteString(e.Message)
	default:
		b.WriteString(http.StatusText(e.StatusCode))
	}
	fmt.Fprintf(&b, " (HTTP %d", e.StatusCode)
	if e.RequestID != "" {
		b.WriteString(", request id " + e.RequestID)
	}
	b.WriteString(")")
	return b.String()
}

// Dial opens the tunnel at a presigned URL: a WebSocket without
// compression, over TLS verified with tlsConfig (nil means the system's
// roots), through the proxy the environment names, if any. An answer other
// than 101 is a *HandshakeError. Errors never quote the URL's signature.
func Dial(ctx context.Context, rawURL string, tlsConfig *tls.Config) (*tunnel.WebSocket, error) {
	ws, _, err := DialAs(ctx, rawURL, tlsConfig, UserAgent)
	return ws, err
}

// DialAs is Dial for a client that names itself with userAgent; it also
// returns the tunnel's id, the request id of the endpoint's answer
// (x-amzn-RequestId), which is the OpenTunnel audit record's.
func DialAs(ctx context.Context, rawURL string, tlsConfig *tls.Config, userAgent string) (*tunnel.WebSocket, string, error) {
	var tc *tls.Config
	if tlsConfig != nil {
		tc = tlsConfig.Clone()
	}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: HandshakeTimeout,
		DialContext:         (&net.Dialer{Timeout: HandshakeTimeout, KeepAlive: 30 * time.Second}).DialContext,
	}
	defer transport.CloseIdleConnections()
	c, resp, err := websocket.Dial(ctx, rawURL, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: transport, Timeout: HandshakeTimeout},
		HTTPHeader:      http.Header{"User-Agent": {userAgent}},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, "", handshakeError(resp)
		}
		return nil, "", dialError(rawURL, err)
	}
	return tunnel.NewWebSocket(c, maxServerMessage), resp.Header.Get(tunnel.RequestIDHeader), nil
}

// handshakeError reads an endpoint's refusal. Only the first KiB of the
// body is readable after a failed dial; error bodies are smaller.
func handshakeError(resp *http.Response) *HandshakeError {
	e := &HandshakeError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get(tunnel.RequestIDHeader)}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
	}
	var v struct {
		ErrorCode string
		Message   string
		// Some AWS services spell it in lower case.
		MessageL string `json:"message"`
	}
	if json.Unmarshal(body, &v) == nil {
		e.ErrorCode, e.Message = v.ErrorCode, v.Message
		if e.Message == "" {
			e.Message = v.MessageL
		}
	} else if s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "?")), " "); s != "" && !strings.HasPrefix(s, "<") {
		e.Message = s
	}
	if e.ErrorCode == "" {
		e.ErrorCode, _, _ = strings.Cut(resp.Header.Get("x-amzn-ErrorType"), ":")
	}
	return e
}

// dialError says why the endpoint could not be reached, naming it without
// the URL's query.
func dialError(rawURL string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("open the tunnel at %s: %w", Redact(rawURL), err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &DialError{URL: Redact(rawURL), Err: err}
}

// DialError is a failure to reach an endpoint or complete the WebSocket
// handshake.
type DialError struct {
	URL string // without the query
	Err error
}

func (e *DialError) Error() string {
	err := e.Err
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return "cannot reach the endpoint at " + e.URL + ": " + strings.TrimPrefix(err.Error(), "failed to WebSocket dial: ")
}

func (e *DialError) Unwrap() error { return e.Err }
