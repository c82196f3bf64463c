package opentunnel

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/postern-dev/postern/tunnel"
)

// MaxFrame is the most Relay sends in one frame: endpoints refuse larger
// client frames.
const MaxFrame = 65000

// ClosedError is the end of a tunnel that the endpoint closed with a code
// other than 1000: the target failed, a limit was reached, the endpoint
// is going away.
type ClosedError struct {
	Code   int
	Reason string
}

func (e *ClosedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("tunnel closed by the endpoint (code %d)", e.Code)
	}
	return fmt.Sprintf("tunnel closed by the endpoint: %s (code %d)", e.Reason, e.Code)
}

// errSendFailed says that the connection failed under a write; the
// receiving side knows why.
var errSendFailed = errors.New("send failed")

// outputError is a failure to write what the endpoint sent.
type outputError struct{ err error }

func (e *outputError) Error() string { return "write the tunnel's output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// Relay carries a byte stream over an open tunnel: what in yields goes to
// the endpoint in binary frames of at most MaxFrame bytes, and what the
// endpoint sends is written to out. It returns when the tunnel ends:
//
//   - in reaches EOF: Relay sends a close frame with code 1000 and waits
//     for the endpoint's answer;
//   - the endpoint closes: nil for code 1000, else a *ClosedError with its
//     code and reason;
//   - ctx is done: Relay closes with code 1001 and returns ctx's error;
//   - the connection breaks, in fails, out fails, or the endpoint sends a
//     text frame: an error that says which.
//
// ws is closed when Relay returns. A Read on in that is still in progress
// then is left to finish in the background (its data is dropped); callers
// that can close in, such as a TCP connection, should.
func Relay(ctx context.Context, ws tunnel.MessageConn, in io.Reader, out io.Writer) error {
	defer ws.CloseNow()
	// The frames must outlive ctx: the close frame goes out first, and a
	// WebSocket whose read or write context ends is torn down at once.
	ioCtx := context.WithoutCancel(ctx)
	sent := make(chan error, 1)
	received := make(chan error, 1)
	go func() { sent <- send(ioCtx, ws, in) }()
	go func() { received <- receive(ioCtx, ws, out) }()

	select {
	case err := <-received:
		var oe *outputError
		if errors.As(err, &oe) {
			ws.Close(tunnel.StatusNormalClosure, "")
		}
		return err
	case err := <-sent:
		rerr := <-received
		switch {
		case err == nil:
			// We closed. Only the endpoint's own abnormal close matters
			// now; a connection that dropped after our close frame does
			// not.
			var ce *ClosedError
			if errors.As(rerr, &ce) {
				return rerr
			}
			return nil
		case errors.Is(err, errSendFailed):
			if rerr == nil {
				return errors.New("the tunnel connection failed while sending")
			}
			return rerr
		}
		return err
	case <-ctx.Done():
		ws.Close(tunnel.StatusGoingAway, "the client is shutting down")
		<-received
		return ctx.Err()
	}
}

// send copies in to the tunnel, then closes it normally.
func send(ctx context.Context, ws tunnel.MessageConn, in io.Reader) error {
	buf := make([]byte, MaxFrame)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if werr := ws.Write(ctx, tunnel.MessageBinary, buf[:n]); werr != nil {
				return errSendFailed
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			ws.Close(tunnel.StatusNormalClosure, "")
			return nil
		case err != nil:
			ws.Close(tunnel.StatusGoingAway, "the client's input failed")
			return fmt.Errorf("read the tunnel's input: %w", err)
		}
	}
}

// receive copies the endpoint's frames to out until the tunnel ends.
func receive(ctx context.Context, ws tunnel.MessageConn, out io.Writer) error {
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			var ce *tunnel.CloseError
			switch {
			case errors.As(err, &ce):
				// 1005: a close frame without a code, which the AWS CLI
				// takes for a normal end too.
				if ce.Code == tunnel.StatusNormalClosure || ce.Code == tunnel.StatusNoStatus {
					return nil
				}
				return &ClosedError{Code: int(ce.Code), Reason: ce.Reason}
			case errors.Is(err, tunnel.ErrMessageTooBig):
				ws.Close(tunnel.StatusMessageTooBig, "frame too big")
				return fmt.Errorf("the endpoint sent a frame over %d bytes", maxServerMessage)
			}
			return fmt.Errorf("the tunnel connection was lost: %w", err)
		}
		if typ != tunnel.MessageBinary {
			ws.Close(tunnel.StatusUnsupportedData, "text frames are not supported")
			return errors.New("the endpoint sent a text frame; tunnels carry binary frames only")
		}
		if _, err := out.Write(data); err != nil {
			return &outputError{err}
		}
	}
}
