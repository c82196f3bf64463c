package endpoint

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/postern-dev/postern/endpointproto"
)

// Refusals of a new tunnel by the endpoint itself.
var (
	refusalShutdown = &endpointproto.TunnelError{Status: http.StatusServiceUnavailable, ErrorCode: "ServiceUnavailable",
		Message: "The Instance Connect Endpoint is shutting down and accepts no new tunnels; try again shortly."}
	refusalDeleted = &endpointproto.TunnelError{Status: http.StatusServiceUnavailable, ErrorCode: "ServiceUnavailable",
		Message: "The Instance Connect Endpoint has been deleted and accepts no new tunnels."}
)

// tunnels counts the endpoint's tunnels against its connection limit and
// closes them all on shutdown or deletion. A tunnel takes a slot before it
// is authorized and gives it back on every way out, so that the limit
// holds however many handshakes race.
type tunnels struct {
	mu    sync.Mutex
	limit int
	live  map[*slot]struct{}
	// refusal, once set, refuses every new tunnel; idle is closed when the
	// last live tunnel has gone after that.
	refusal *endpointproto.TunnelError
	idle    chan struct{}
}

// slot is one tunnel's place. Its context ends when the endpoint closes
// the tunnel; the cause is then a *tunnel.CloseError.
type slot struct {
	ts     *tunnels
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

func newTunnels(limit int) *tunnels {
	return &tunnels{limit: limit, live: map[*slot]struct{}{}, idle: make(chan struct{})}
}

// reserve takes a slot, or says why the tunnel is refused.
func (ts *tunnels) reserve() (*slot, *endpointproto.TunnelError) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.refusal != nil {
		return nil, ts.refusal
	}
	if len(ts.live) >= ts.limit {
		return nil, &endpointproto.TunnelError{Status: http.StatusTooManyRequests, ErrorCode: "TooManyTunnels",
			Message: fmt.Sprintf("The Instance Connect Endpoint already carries its limit of %d concurrent tunnels; try again when one closes.", ts.limit)}
	}
	s := &slot{ts: ts}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	ts.live[s] = struct{}{}
	return s, nil
}

// release gives the slot back. It may be called more than once.
func (s *slot) release() {
	s.once.Do(func() {
		s.cancel(nil)
		ts := s.ts
		ts.mu.Lock()
		defer ts.mu.Unlock()
		delete(ts.live, s)
		if ts.refusal != nil && len(ts.live) == 0 {
			close(ts.idle)
		}
	})
}

// refused returns why the endpoint closed this tunnel early, or nil while
// the slot's context is live.
func (s *slot) refused() *endpointproto.TunnelError {
	if s.ctx.Err() == nil {
		return nil
	}
	s.ts.mu.Lock()
	defer s.ts.mu.Unlock()
	if s.ts.refusal != nil {
		return s.ts.refusal
	}
	return refusalShutdown
}

func (ts *tunnels) setLimit(n int) {
	ts.mu.Lock()
	ts.limit = n
	ts.mu.Unlock()
}

func (ts *tunnels) limitNow() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.limit
}

func (ts *tunnels) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.live)
}

// stop refuses every new tunnel with why. The first call decides.
func (ts *tunnels) stop(why *endpointproto.TunnelError) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.refusal != nil {
		return
	}
	ts.refusal = why
	if len(ts.live) == 0 {
		close(ts.idle)
	}
}

// closeAll ends every live tunnel's context with cause and returns how
// many there were. Call stop first, or new tunnels may follow.
func (ts *tunnels) closeAll(cause error) int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for s := range ts.live {
		s.cancel(cause)
	}
	return len(ts.live)
}

// wait returns once stop was called and no tunnel is left, or with ctx's
// error.
func (ts *tunnels) wait(ctx context.Context) error {
	select {
	case <-ts.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
