package dialguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/postern-dev/postern"
)

// DefaultTimeout bounds a connect attempt when Dialer.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Dialer opens TCP connections to targets that its Policy allows.
type Dialer struct {
	Policy Policy
	// Timeout bounds the TCP connect; DefaultTimeout when zero.
	Timeout time.Duration
}

// DialContext connects to addr:port. Targets are IP literals: nothing is
// resolved. The target is checked before dialling and again on the socket
// address just before the connect; a refusal is the *postern.Error from
// Policy.Check. A target that refuses the connection, cannot be reached or
// does not answer within the timeout gives a *postern.Error of kind
// KindUnavailable whose message says which, and which wraps the cause (the
// context's error when ctx ended first).
func (d *Dialer) DialContext(ctx context.Context, addr netip.Addr, port uint16) (*net.TCPConn, error) {
	if err := d.Policy.Check(addr, port); err != nil {
		return nil, err
	}
	target := netip.AddrPortFrom(addr.Unmap(), port)
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	network := "tcp4"
	if target.Addr().Is6() {
		network = "tcp6"
	}
	nd := net.Dialer{Timeout: timeout, Control: d.control}
	c, err := nd.DialContext(ctx, network, target.String())
	if err != nil {
		return nil, dialError(ctx, target, timeout, err)
	}
	tc := c.(*net.TCPConn)
	// The connection is made; make sure it is to the address we checked.
	if got := tc.RemoteAddr().(*net.TCPAddr).AddrPort(); netip.AddrPortFrom(got.Addr().Unmap(), got.Port()) != target {
		tc.Close()
		return nil, postern.Internal(fmt.Errorf("connected to %s, not %s", got, target), "connection to target %s went elsewhere", target)
	}
	return tc, nil
}

// control runs on the socket just before connect(2) and re-checks the
// address the kernel is about to be given.
func (d *Dialer) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return postern.Invalidf("network %q is not tunnelled", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return postern.Invalidf("socket address %q is not an IP address and port", address)
	}
	return d.Policy.Check(ap.Addr(), ap.Port())
}

// dialError turns a failed connect into a message for the client.
func dialError(ctx context.Context, target netip.AddrPort, timeout time.Duration, err error) error {
	var pe *postern.Error
	if errors.As(err, &pe) {
		return pe // refused by the control hook
	}
	// The dialer stops at the context's deadline on its own timer, which
	// may fire a moment before the context's: a passed deadline counts as
	// the context's end too.
	cause := context.Cause(ctx)
	if dl, ok := ctx.Deadline(); cause == nil && ok && !time.Now().Before(dl) {
		cause = context.DeadlineExceeded
	}
	if cause != nil {
		return &postern.Error{Kind: postern.KindUnavailable,
			Message: fmt.Sprintf("connecting to target %s was abandoned", target),
			Err:     fmt.Errorf("%w (%w)", cause, err)}
	}
	var msg string
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		msg = fmt.Sprintf("target %s did not answer within %s", target, timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = fmt.Sprintf("target %s refused the connection (nothing listens on port %d)", target, target.Port())
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		msg = fmt.Sprintf("target %s is unreachable from the endpoint", target)
	default:
		msg = fmt.Sprintf("cannot connect to target %s", target)
	}
	return &postern.Error{Kind: postern.KindUnavailable, Message: msg, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
