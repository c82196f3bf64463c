package endpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/endpointproto"
)

// maxResponse bounds what the endpoint reads of a server answer.
const maxResponse = 1 << 20

// serverClient makes the endpoint's calls to the server, each with the
// join credential as a bearer token. With several server replicas it uses
// one until it cannot be reached, then moves to the next.
type serverClient struct {
	bases      []string
	next       atomic.Uint32 // index into bases of the one in use
	credential string
	hc         *http.Client
}

// base returns the server URL in use.
func (c *serverClient) base() (string, uint32) {
	i := c.next.Load()
	return c.bases[int(i)%len(c.bases)], i
}

// unreachable moves past the server in use i, unless another call moved
// already.
func (c *serverClient) unreachable(i uint32) {
	if len(c.bases) > 1 {
		c.next.CompareAndSwap(i, i+1)
	}
}

// callError is a call the server answered with an error status.
type callError struct {
	Path   string
	Status int
	Code   string
	// Message is the server's; it holds no secret.
	Message string
}

func (e *callError) Error() string {
	msg := e.Message
	if e.Code != "" {
		msg = e.Code + ": " + msg
	}
	return fmt.Sprintf("server answered %s with %d %s", e.Path, e.Status, msg)
}

// permanent reports whether err will not go away by calling again: the
// server refused the call itself (4xx other than throttling).
func permanent(err error) bool {
	var ce *callError
	return errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 && ce.Status != http.StatusTooManyRequests
}

func (c *serverClient) header() http.Header {
	return http.Header{"Authorization": {"Bearer " + c.credential}}
}

// call POSTs in as JSON to path and decodes the answer into out.
func (c *serverClient) call(ctx context.Context, path string, in, out any) (http.Header, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	base, i := c.base()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = c.header()
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.unreachable(i)
		}
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.Header, fmt.Errorf("reading the server's answer to %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		ce := &callError{Path: path, Status: resp.StatusCode}
		var er endpointproto.ErrorResponse
		if json.Unmarshal(data, &er) == nil {
			ce.Code, ce.Message = er.Code, er.Message
		}
		if ce.Message == "" {
			ce.Message = http.StatusText(resp.StatusCode)
		}
		return resp.Header, ce
	}
	if out == nil {
		return resp.Header, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.Header, fmt.Errorf("the server's answer to %s is not valid JSON: %w", path, err)
	}
	return resp.Header, nil
}

// dial opens a WebSocket to path (with query), without compression. extra
// headers are added to the request.
func (c *serverClient) dial(ctx context.Context, path string, query url.Values, extra http.Header) (*websocket.Conn, error) {
	return c.dialAt(ctx, "", path, query, extra)
}

// dialAt is dial at another server replica's base URL (empty: the one in
// use).
func (c *serverClient) dialAt(ctx context.Context, at, path string, query url.Values, extra http.Header) (*websocket.Conn, error) {
	base, i := c.base()
	if at != "" {
		base = at
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	h := c.header()
	for k, v := range extra {
		h[k] = v
	}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: c.hc, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			ce := &callError{Path: path, Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
			var er endpointproto.ErrorResponse
			if resp.Body != nil {
				data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
				if json.Unmarshal(data, &er) == nil && er.Message != "" {
					ce.Code, ce.Message = er.Code, er.Message
				}
			}
			return nil, ce
		}
		if ctx.Err() == nil && at == "" {
			c.unreachable(i)
		}
		return nil, err
	}
	return conn, nil
}

// backoff is a jittered exponential wait between attempts to reach the
// server, so that a fleet of endpoints does not come back in lockstep.
type backoff struct {
	next, max time.Duration
}

func newBackoff(max time.Duration) *backoff { return &backoff{next: time.Second, max: max} }

// wait sleeps for a random time up to the current step, then doubles the
// step. It returns false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := time.Duration(rand.Int64N(int64(b.next))) + 100*time.Millisecond
	b.next = min(2*b.next, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reset starts again from the smallest step, after a healthy connection.
func (b *backoff) reset() { b.next = time.Second }

// isCallError reports whether the server answered, with an error status.
func isCallError(err error) bool {
	var ce *callError
	return errors.As(err, &ce)
}
