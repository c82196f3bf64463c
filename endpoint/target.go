package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/dialguard"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/tunnel"
)

// dialTarget checks t's target against the dial policy in force and
// connects to it within the dial timeout.
func (e *Endpoint) dialTarget(ctx context.Context, t *endpointproto.Tunnel) (net.Conn, error) {
	addr, err := netip.ParseAddr(t.Target)
	if err != nil {
		return nil, postern.Invalidf("target %q is not an IP address", t.Target)
	}
	if t.RemotePort <= 0 || t.RemotePort > 65535 {
		return nil, postern.Invalidf("target port %d is not a valid port", t.RemotePort)
	}
	port := uint16(t.RemotePort)
	_, policy := e.current()
	if err := policy.Check(addr, port); err != nil {
		return nil, err
	}
	if e.cfg.Dial == nil {
		d := &dialguard.Dialer{Policy: policy, Timeout: e.cfg.DialTimeout}
		return d.DialContext(ctx, addr, port)
	}
	dctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
	defer cancel()
	c, err := e.cfg.Dial(dctx, policy, addr, port)
	var pe *postern.Error
	switch {
	case err == nil, errors.As(err, &pe):
		return c, err
	case dctx.Err() != nil && ctx.Err() == nil:
		return nil, &postern.Error{Kind: postern.KindUnavailable, Err: err,
			Message: fmt.Sprintf("target %s did not answer within %s", netip.AddrPortFrom(addr, port), e.cfg.DialTimeout)}
	}
	return nil, &postern.Error{Kind: postern.KindUnavailable, Err: err,
		Message: fmt.Sprintf("cannot connect to target %s", netip.AddrPortFrom(addr, port))}
}

// tunnelError turns why a tunnel could not be set up into the handshake
// refusal the client gets. It is the one place where the endpoint's errors
// become HTTP statuses and error codes; messages hold no secret.
func tunnelError(err error) *endpointproto.TunnelError {
	var te *endpointproto.TunnelError
	if errors.As(err, &te) {
		return te
	}
	var pe *postern.Error
	if !errors.As(err, &pe) {
		return &endpointproto.TunnelError{Status: http.StatusInternalServerError, ErrorCode: "InternalServerError",
			Message: "The Instance Connect Endpoint could not set the tunnel up."}
	}
	switch pe.Kind {
	case postern.KindInvalid:
		return &endpointproto.TunnelError{Status: http.StatusBadRequest, ErrorCode: "InvalidTarget", Message: pe.Message}
	case postern.KindDenied:
		return &endpointproto.TunnelError{Status: http.StatusForbidden, ErrorCode: "TargetNotAllowed", Message: pe.Message}
	case postern.KindUnavailable:
		if timedOut(err) {
			return &endpointproto.TunnelError{Status: http.StatusGatewayTimeout, ErrorCode: "TargetTimeout", Message: pe.Message}
		}
		return &endpointproto.TunnelError{Status: http.StatusBadGateway, ErrorCode: "TargetUnreachable", Message: pe.Message}
	}
	return &endpointproto.TunnelError{Status: http.StatusInternalServerError, ErrorCode: "InternalServerError", Message: pe.Message}
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Causes reported for tunnels that never carried a byte.
const (
	causeSetupFailed = "setup-failed"
)

// closed is the close record of a tunnel that ran.
func closed(t *endpointproto.Tunnel, res tunnel.Result) endpointproto.Closed {
	return endpointproto.Closed{
		TunnelID: t.ID, BytesIn: res.BytesFromClient, BytesOut: res.BytesToClient,
		DurationMillis: res.Duration.Milliseconds(), Cause: res.Cause.String(),
		Code: int(res.CloseCode), Reason: res.Reason,
	}
}

// Reporting a tunnel's end is retried this many times, this far apart
// (doubling), within reportTimeout.
const (
	reportAttempts = 4
	reportFirstGap = 250 * time.Millisecond
	reportTimeout  = 20 * time.Second
)

// report sends a tunnel's close record to the server, retrying a few times
// since the audit trail wants it; in the end a failure is only logged.
func (e *Endpoint) report(c endpointproto.Closed) {
	ctx, cancel := context.WithTimeout(e.reports, reportTimeout)
	defer cancel()
	gap := reportFirstGap
	var err error
	for i := 0; i < reportAttempts; i++ {
		if _, err = e.srv.call(ctx, endpointproto.ClosedPath, c, nil); err == nil || permanent(err) {
			break
		}
		t := time.NewTimer(gap)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		gap *= 2
	}
	if err != nil {
		e.log.Error("cannot report a closed tunnel to the server", "tunnel", c.TunnelID, "err", err)
	}
}

// pipe carries tunnel t between ws and tcp in slot s, then gives the slot
// back, logs the tunnel's end and reports it.
func (e *Endpoint) pipe(s *slot, t *endpointproto.Tunnel, ws tunnel.MessageConn, tcp net.Conn) {
	e.log.Info("tunnel open", "tunnel", t.ID, "target", targetString(t), "caller", t.Caller, "source", t.SourceIP)
	res := tunnel.Pipe(s.ctx, ws, tcp, e.limits(t))
	attrs := []any{"tunnel", t.ID, "target", targetString(t), "caller", t.Caller,
		"bytes_in", res.BytesFromClient, "bytes_out", res.BytesToClient, "duration", res.Duration.Round(time.Millisecond),
		"cause", res.Cause.String(), "code", int(res.CloseCode), "reason", res.Reason}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err)
	}
	e.log.Info("tunnel closed", attrs...)
	e.end(s, closed(t, res))
}

// end gives slot s back, since the tunnel no longer holds a connection,
// and reports c. Deletion and shutdown wait for the report too.
func (e *Endpoint) end(s *slot, c endpointproto.Closed) {
	e.reporting.Add(1)
	defer e.reporting.Done()
	s.release()
	e.report(c)
}

// connect dials t's target for the tunnel in slot s. When that fails it
// logs why and returns the refusal for the client: the endpoint's own
// when it is closing the tunnel, else the dial error's.
func (e *Endpoint) connect(s *slot, t *endpointproto.Tunnel) (net.Conn, *endpointproto.TunnelError) {
	tcp, err := e.dialTarget(s.ctx, t)
	if err == nil {
		return tcp, nil
	}
	te := s.refused()
	if te == nil {
		te = tunnelError(err)
	}
	e.log.Warn("tunnel not set up", "tunnel", t.ID, "target", targetString(t), "caller", t.Caller,
		"status", te.Status, "code", te.ErrorCode, "err", err)
	return nil, te
}

func targetString(t *endpointproto.Tunnel) string {
	if a, err := netip.ParseAddr(t.Target); err == nil && t.RemotePort > 0 && t.RemotePort <= 65535 {
		return netip.AddrPortFrom(a, uint16(t.RemotePort)).String()
	}
	return fmt.Sprintf("%s port %d", t.Target, t.RemotePort)
}
