package endpoint

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/tunnel"
)

// relayDialTimeout bounds a dial back to the server.
const relayDialTimeout = 15 * time.Second

// relay sets up a relay-mode tunnel the server sent on the control
// connection: take a slot, dial the target, then dial the server back and
// pipe. The slot is taken at once, in order of the server's messages; the
// rest runs on its own goroutine.
func (e *Endpoint) relay(t endpointproto.Tunnel) {
	s, refusal := e.tunnels.reserve()
	e.relays.Add(1)
	go func() {
		defer e.relays.Done()
		if refusal != nil {
			e.log.Info("tunnel refused", "tunnel", t.ID, "status", refusal.Status, "code", refusal.ErrorCode)
			e.relayRefuse(&t, refusal)
			// The server counted the tunnel when it authorized it: the
			// report gives its place back and closes its audit record.
			e.reporting.Add(1)
			defer e.reporting.Done()
			e.report(endpointproto.Closed{TunnelID: t.ID, Cause: causeSetupFailed, Reason: refusal.Message})
			return
		}
		defer s.release()
		e.relayTunnel(s, &t)
	}()
}

func (e *Endpoint) relayTunnel(s *slot, t *endpointproto.Tunnel) {
	tcp, te := e.connect(s, t)
	if te != nil {
		s.release()
		e.relayRefuse(t, te)
		e.end(s, endpointproto.Closed{TunnelID: t.ID, Cause: causeSetupFailed, Reason: te.Message})
		return
	}
	dctx, cancel := context.WithTimeout(s.ctx, relayDialTimeout)
	c, err := e.srv.dialAt(dctx, dialBack(t), endpointproto.RelayPath, url.Values{"tunnel": {t.ID}}, nil)
	cancel()
	if err != nil {
		tcp.Close()
		e.log.Warn("cannot dial the server back for a tunnel", "tunnel", t.ID, "err", err)
		e.end(s, endpointproto.Closed{TunnelID: t.ID, Cause: causeSetupFailed, Reason: "the endpoint could not reach the server back"})
		return
	}
	e.pipe(s, t, tunnel.NewWebSocket(c, tunnel.DefaultMaxFrame), tcp)
}

// relayRefuse dials the server back with why the tunnel cannot be set up;
// the server refuses the client's handshake with it, and this dial.
func (e *Endpoint) relayRefuse(t *endpointproto.Tunnel, te *endpointproto.TunnelError) {
	b, _ := json.Marshal(te)
	ctx, cancel := context.WithTimeout(e.reports, relayDialTimeout)
	defer cancel()
	c, err := e.srv.dialAt(ctx, dialBack(t), endpointproto.RelayPath, url.Values{"tunnel": {t.ID}}, http.Header{endpointproto.TunnelErrorHeader: {string(b)}})
	if err == nil {
		// The server should have refused; the tunnel is not wanted either way.
		c.CloseNow()
	} else if !isCallError(err) {
		e.log.Warn("cannot tell the server why a tunnel failed", "tunnel", t.ID, "err", err)
	}
}

// dialBack is where to dial the server back for t: the replica that holds
// the client's side when the server named one (an https URL; the same CA
// vouches for every replica), else the server of the control connection.
func dialBack(t *endpointproto.Tunnel) string {
	if strings.HasPrefix(t.DialBack, "https://") {
		return strings.TrimRight(t.DialBack, "/")
	}
	return ""
}
