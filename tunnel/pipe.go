package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Cause says what ended a tunnel.
type Cause int

// Causes, from the client's side, the target's, and the endpoint's.
const (
	CauseClientClosed Cause = iota + 1 // the client sent a close frame
	CauseClientLost                    // the client connection broke without a close frame
	CauseKeepalive                     // the client stopped answering pings
	CauseProtocol                      // the client sent a TEXT or oversized frame
	CauseTargetClosed                  // the target ended its stream
	CauseTargetFailed                  // reading from or writing to the target failed
	CauseMaxDuration                   // the tunnel reached its maximum duration
	CauseCanceled                      // the caller's context ended
)

var causeNames = [...]string{
	CauseClientClosed: "client-closed",
	CauseClientLost:   "client-lost",
	CauseKeepalive:    "keepalive-timeout",
	CauseProtocol:     "protocol-error",
	CauseTargetClosed: "target-closed",
	CauseTargetFailed: "target-failed",
	CauseMaxDuration:  "max-duration",
	CauseCanceled:     "canceled",
}

func (c Cause) String() string {
	if c > 0 && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%d)", int(c))
}

// Result describes a finished tunnel, for the audit trail and metrics.
type Result struct {
	BytesFromClient int64 // bytes the client sent that were written to the target
	BytesToClient   int64 // bytes the target sent that were written to the client
	Duration        time.Duration
	// CloseCode and Reason are those of the close frame that ended the
	// tunnel: the one Pipe sent, or the client's. StatusAbnormalClosure
	// means that none was exchanged because the client was gone.
	CloseCode StatusCode
	Reason    string
	Cause     Cause
	Err       error // the failure behind an abnormal end, for logs; nil otherwise
}

// Pipe carries one TCP stream between the client, ws, and the target, tcp:
// each binary message from the client is written to the target, and what
// the target sends goes to the client in binary messages of at most 32 KiB.
// It returns when the tunnel ends, having closed both connections:
//
//   - the client closes: everything it sent before its close frame reaches
//     the target, whose write side is then shut (half-close) so that it sees
//     end of stream; Pipe waits up to lim.DrainTimeout for it to close.
//   - the target ends its stream: what it sent reaches the client, then a
//     close frame with StatusNormalClosure.
//   - the client sends a TEXT frame (StatusUnsupportedData) or a frame over
//     lim.MaxFrame bytes (StatusMessageTooBig), the target connection fails
//     (StatusInternalError) or lim.MaxDuration passes (StatusPolicyViolation):
//     a close frame with that code and a reason.
//   - ctx is done: a close frame with the code and reason of its cause when
//     that is a *CloseError (see context.WithCancelCause), else
//     StatusGoingAway.
//   - the client connection breaks, or the client leaves a ping unanswered
//     for lim.PingInterval while nothing else shows it alive.
func Pipe(ctx context.Context, ws MessageConn, tcp net.Conn, lim Limits) Result {
	p := &pipe{ws: ws, tcp: tcp, lim: lim.withDefaults(), start: time.Now()}
	return p.run(ctx)
}

type pipe struct {
	ws    MessageConn
	tcp   net.Conn
	lim   Limits
	start time.Time

	fromClient atomic.Int64
	toClient   atomic.Int64
	// progress counts messages read from and written to the client: while it
	// moves, the client is alive whatever happens to pings.
	progress atomic.Int64
	// writing is set while a client message is being written to the target;
	// meanwhile nobody reads from the client, so pongs go unseen.
	writing atomic.Bool

	// ending is set by the first way the tunnel ends; that caller shuts
	// both connections, records the end in final, and closes shut.
	ending   atomic.Bool
	final    event
	shut     chan struct{}
	downDone chan struct{}
	cancelIO context.CancelFunc

	// pinger keeps the client's liveness checked. pingMu orders a firing
	// pinger's look at ending with the end of run, which then waits for
	// pings, the pings in flight.
	pingMu sync.Mutex
	pinger *time.Timer
	pings  sync.WaitGroup
}

// event is a way for the tunnel to end.
type event struct {
	cause  Cause
	code   StatusCode
	reason string
	err    error
}

// run carries the tunnel with two goroutines, so that an idle tunnel costs
// two stacks: the caller's, which copies client messages to the target, and
// one that copies what the target sends to the client. The maximum
// duration, ctx and keepalive pings are timers that run only when they fire.
func (p *pipe) run(ctx context.Context) Result {
	// The copies must outlive ctx: the close frame goes out first, and a
	// WebSocket whose read or write context ends is torn down at once.
	ioCtx, cancelIO := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelIO()
	p.cancelIO = cancelIO
	p.shut = make(chan struct{})
	p.downDone = make(chan struct{})
	go func() { defer close(p.downDone); p.down(ioCtx) }()

	maxDuration := time.AfterFunc(p.lim.MaxDuration, func() {
		p.end(event{cause: CauseMaxDuration, code: StatusPolicyViolation,
			reason: fmt.Sprintf("maximum tunnel duration of %s reached", seconds(p.lim.MaxDuration))})
	})
	defer maxDuration.Stop()
	stopCtx := context.AfterFunc(ctx, func() { p.end(canceled(ctx)) })
	defer stopCtx()
	if p.lim.PingInterval > 0 {
		p.pingMu.Lock()
		p.pinger = time.AfterFunc(p.lim.PingInterval, func() { p.ping(ioCtx) })
		p.pingMu.Unlock()
	}

	p.end(p.up(ioCtx))
	<-p.shut
	<-p.downDone
	p.pingMu.Lock() // a pinger firing from now on sees the end
	if p.pinger != nil {
		p.pinger.Stop()
	}
	p.pingMu.Unlock()
	p.pings.Wait()

	return Result{
		BytesFromClient: p.fromClient.Load(),
		BytesToClient:   p.toClient.Load(),
		Duration:        time.Since(p.start),
		CloseCode:       p.final.code,
		Reason:          p.final.reason,
		Cause:           p.final.cause,
		Err:             p.final.err,
	}
}

// end ends the tunnel the way ev says, unless it has already ended: the
// first caller closes both connections as the end calls for, which makes
// the copies return, and later ones return at once.
func (p *pipe) end(ev event) {
	if !p.ending.CompareAndSwap(false, true) {
		return
	}
	p.final = p.shutdown(ev)
	p.cancelIO()
	close(p.shut)
}

// ping sends the client a keepalive ping when the pinger fires, ends the
// tunnel if it goes unanswered while nothing else shows the client alive,
// and otherwise sets the pinger for the next one.
func (p *pipe) ping(ioCtx context.Context) {
	p.pingMu.Lock()
	if p.ending.Load() {
		p.pingMu.Unlock()
		return
	}
	p.pings.Add(1)
	p.pingMu.Unlock()
	defer p.pings.Done()

	progress, writingBefore := p.progress.Load(), p.writing.Load()
	pctx, cancel := context.WithTimeout(ioCtx, p.lim.PingInterval)
	err := p.ws.Ping(pctx)
	cancel()
	// Only an unanswered ping counts: a broken connection is the reader's
	// to report. And while a client message is being written to the
	// target, nobody reads the pong.
	if errors.Is(err, context.DeadlineExceeded) && !writingBefore && !p.writing.Load() && p.progress.Load() == progress {
		p.end(event{cause: CauseKeepalive, code: StatusAbnormalClosure,
			reason: fmt.Sprintf("client did not answer a keepalive ping within %s", seconds(p.lim.PingInterval)), err: err})
		return
	}
	p.pingMu.Lock()
	if !p.ending.Load() {
		p.pinger.Reset(p.lim.PingInterval)
	}
	p.pingMu.Unlock()
}

// shutdown closes both connections the way the end calls for, and returns
// the end as it went on the wire.
func (p *pipe) shutdown(end event) event {
	switch end.cause {
	case CauseClientClosed:
		// Everything the client sent before its close frame has been written
		// to the target. Pass the end on and let the target finish; what it
		// still sends has nowhere to go and is read only to be dropped.
		if cw, ok := p.tcp.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			p.tcp.SetReadDeadline(time.Now().Add(p.lim.DrainTimeout))
			<-p.downDone
		}
		p.tcp.Close()
		p.ws.CloseNow()
	case CauseClientLost, CauseKeepalive:
		p.ws.CloseNow()
		p.tcp.Close()
	default:
		end.reason = closeReason(end.reason)
		p.tcp.Close()
		p.ws.Close(end.code, end.reason)
	}
	return end
}

// up copies client messages to the target until that ends, and says how.
func (p *pipe) up(ctx context.Context) event {
	for {
		typ, data, err := p.ws.Read(ctx)
		if err != nil {
			return p.clientReadEnd(err)
		}
		p.progress.Add(1)
		if typ != MessageBinary {
			return event{cause: CauseProtocol, code: StatusUnsupportedData,
				reason: "text frames are not supported: OpenTunnel carries binary frames only"}
		}
		if len(data) > p.lim.MaxFrame {
			return p.tooBig()
		}
		p.writing.Store(true)
		n, err := p.tcp.Write(data)
		p.writing.Store(false)
		p.fromClient.Add(int64(n))
		if err != nil {
			return event{cause: CauseTargetFailed, code: StatusInternalError, reason: targetFailure(err), err: err}
		}
	}
}

func (p *pipe) clientReadEnd(err error) event {
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		return event{cause: CauseClientClosed, code: ce.Code, reason: ce.Reason}
	case errors.Is(err, ErrMessageTooBig):
		return p.tooBig()
	}
	return event{cause: CauseClientLost, code: StatusAbnormalClosure, reason: "client connection lost", err: err}
}

func (p *pipe) tooBig() event {
	return event{cause: CauseProtocol, code: StatusMessageTooBig,
		reason: fmt.Sprintf("frame exceeds the maximum size of %d bytes", p.lim.MaxFrame)}
}

// down copies what the target sends to the client. Once a write to the
// client fails it keeps reading, and dropping, so that a target that is
// being drained is not cut off.
func (p *pipe) down(ctx context.Context) {
	rc := rawConn(p.tcp)
	failed := false
	drained := true // the last read emptied the socket, so the next would wait
	for {
		if rc != nil && drained {
			// Wait without a buffer: an idle tunnel holds none.
			if err := waitReadable(rc); err != nil {
				if !failed {
					p.end(targetReadEnd(err))
				}
				return
			}
		}
		bp := buffers.Get().(*[]byte)
		n, err := p.tcp.Read((*bp)[:chunkSize])
		drained = n < chunkSize
		if n > 0 && !failed {
			if werr := p.ws.Write(ctx, MessageBinary, (*bp)[:n]); werr != nil {
				// The client connection broke under a write. Make sure
				// the reader notices too: it is the one that can tell a
				// close frame from a lost connection.
				failed = true
				p.ws.CloseNow()
			} else {
				p.toClient.Add(int64(n))
				p.progress.Add(1)
			}
		}
		buffers.Put(bp)
		if err != nil {
			if !failed {
				p.end(targetReadEnd(err))
			}
			return
		}
	}
}

func targetReadEnd(err error) event {
	if errors.Is(err, io.EOF) {
		return event{cause: CauseTargetClosed, code: StatusNormalClosure, reason: "target closed the connection"}
	}
	return event{cause: CauseTargetFailed, code: StatusInternalError, reason: targetFailure(err), err: err}
}

// targetFailure says what went wrong with the target without naming the
// endpoint's addresses.
func targetFailure(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the target reset the connection"
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH):
		return "the target stopped responding"
	}
	return "the connection to the target failed"
}

// canceled is how the tunnel ends when ctx is done.
func canceled(ctx context.Context) event {
	cause := context.Cause(ctx)
	var ce *CloseError
	if errors.As(cause, &ce) && ce.Code.sendable() {
		return event{cause: CauseCanceled, code: ce.Code, reason: ce.Reason}
	}
	return event{cause: CauseCanceled, code: StatusGoingAway, reason: "the endpoint closed the tunnel", err: cause}
}

// seconds writes whole seconds as "3600s", the unit of maxTunnelDuration,
// and anything finer as time.Duration does.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
