// Package tunneltest helps test code built on package tunnel: an in-memory
// tunnel.MessageConn pair, and a conformance suite that every MessageConn
// implementation passes.
package tunneltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/tunnel"
)

// CloseTimeout bounds how long Close waits to send its close frame and to
// receive the peer's, as a WebSocket library does.
const CloseTimeout = 5 * time.Second

var (
	// errLost is what Read returns once the peer vanished (CloseNow).
	errLost = fmt.Errorf("tunneltest: connection lost: %w", io.EOF)
	// errReset is what Write and Ping return once the peer vanished.
	errReset = errors.New("tunneltest: connection reset by peer")
)

type frameKind int

const (
	kindData frameKind = iota
	kindClose
	kindPing
	kindPong
)

type frame struct {
	kind   frameKind
	typ    tunnel.MessageType
	data   []byte
	code   tunnel.StatusCode
	reason string
	id     uint64
}

// Conn is one end of an in-memory message connection made by Pair. It
// behaves as a WebSocket does: messages keep their type and boundaries;
// a close frame follows the messages written before it and is answered by
// the peer's Read, after which both ends are closed; pings are answered by
// the peer's Read; CloseNow makes the peer's Read fail as a lost
// connection would. Writes block while 16 messages wait unread.
type Conn struct {
	// OnPing, when set before the Conn is used, is called for each ping
	// that Read answers.
	OnPing func()

	peer *Conn
	data chan frame // data and close frames from the peer, in order
	ctl  chan frame // pings and pongs from the peer

	readMu  chan struct{} // one Read (or Close awaiting its reply) at a time
	writeMu chan struct{} // orders data frames and the close frame

	mu        sync.Mutex
	closeSent bool
	received  *tunnel.CloseError // the peer's close frame
	pings     map[uint64]chan struct{}
	nextPing  uint64

	gotClose     chan struct{} // closed when the peer's close frame was read
	gotCloseOnce sync.Once
	closing      atomic.Bool
	closed       chan struct{}
	closeOnce    sync.Once
}

var _ tunnel.MessageConn = (*Conn)(nil)

// Pair returns the two ends of a new in-memory connection.
func Pair() (a, b *Conn) {
	a, b = newConn(), newConn()
	a.peer, b.peer = b, a
	return a, b
}

func newConn() *Conn {
	return &Conn{
		data:     make(chan frame, 16),
		ctl:      make(chan frame, 16),
		readMu:   make(chan struct{}, 1),
		writeMu:  make(chan struct{}, 1),
		pings:    make(map[uint64]chan struct{}),
		gotClose: make(chan struct{}),
		closed:   make(chan struct{}),
	}
}

// Read implements tunnel.MessageConn.
func (c *Conn) Read(ctx context.Context) (tunnel.MessageType, []byte, error) {
	select {
	case c.readMu <- struct{}{}:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case <-c.closed:
		return 0, nil, c.closedErr()
	}
	defer func() { <-c.readMu }()
	for {
		var f frame
		select {
		case f = <-c.data:
		case f = <-c.ctl:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-c.closed:
			return 0, nil, c.closedErr()
		case <-c.peer.closed:
			// What the peer sent before it went is still delivered.
			select {
			case f = <-c.data:
			default:
				c.markClosed()
				return 0, nil, errLost
			}
		}
		switch f.kind {
		case kindData:
			return f.typ, f.data, nil
		case kindClose:
			return 0, nil, c.receiveClose(f)
		case kindPing:
			if c.OnPing != nil {
				c.OnPing()
			}
			select {
			case c.peer.ctl <- frame{kind: kindPong, id: f.id}:
			default: // a full control queue drops the pong, as a stalled socket would delay it
			}
		case kindPong:
			c.mu.Lock()
			ch := c.pings[f.id]
			c.mu.Unlock()
			if ch != nil {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}
}

// receiveClose records the peer's close frame, answers it unless Close
// already sent one, and closes the connection.
func (c *Conn) receiveClose(f frame) error {
	ce := &tunnel.CloseError{Code: f.code, Reason: f.reason}
	c.mu.Lock()
	c.received = ce
	sent := c.closeSent
	c.closeSent = true
	c.mu.Unlock()
	c.gotCloseOnce.Do(func() { close(c.gotClose) })
	if !sent {
		t := time.NewTimer(CloseTimeout)
		select {
		case c.peer.data <- frame{kind: kindClose, code: f.code, reason: f.reason}:
		case <-c.peer.closed:
		case <-t.C:
		}
		t.Stop()
	}
	c.markClosed()
	return &tunnel.CloseError{Code: ce.Code, Reason: ce.Reason}
}

func (c *Conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.received != nil {
		return &tunnel.CloseError{Code: c.received.Code, Reason: c.received.Reason}
	}
	return net.ErrClosed
}

// Write implements tunnel.MessageConn.
func (c *Conn) Write(ctx context.Context, typ tunnel.MessageType, p []byte) error {
	select {
	case c.writeMu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return net.ErrClosed
	}
	defer func() { <-c.writeMu }()
	c.mu.Lock()
	sent := c.closeSent
	c.mu.Unlock()
	if sent || c.isClosed() {
		return net.ErrClosed
	}
	select {
	case c.peer.data <- frame{kind: kindData, typ: typ, data: bytes.Clone(p)}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return net.ErrClosed
	case <-c.peer.closed:
		return errReset
	}
}

// Ping implements tunnel.MessageConn.
func (c *Conn) Ping(ctx context.Context) error {
	pong := make(chan struct{}, 1)
	c.mu.Lock()
	c.nextPing++
	id := c.nextPing
	c.pings[id] = pong
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pings, id)
		c.mu.Unlock()
	}()
	select {
	case c.peer.ctl <- frame{kind: kindPing, id: id}:
	case <-ctx.Done():
		return fmt.Errorf("tunneltest: ping: %w", ctx.Err())
	case <-c.closed:
		return net.ErrClosed
	case <-c.peer.closed:
		return errReset
	}
	select {
	case <-pong:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tunneltest: waiting for pong: %w", ctx.Err())
	case <-c.closed:
		return net.ErrClosed
	case <-c.peer.closed:
		return errReset
	}
}

// Close implements tunnel.MessageConn.
func (c *Conn) Close(code tunnel.StatusCode, reason string) error {
	if c.closing.Swap(true) {
		return net.ErrClosed
	}
	t := time.NewTimer(CloseTimeout)
	defer t.Stop()
	c.mu.Lock()
	sent := c.closeSent
	c.closeSent = true
	c.mu.Unlock()
	if !sent {
		select {
		case c.writeMu <- struct{}{}:
			select {
			case c.peer.data <- frame{kind: kindClose, code: code, reason: reason}:
			case <-c.peer.closed:
			case <-c.closed:
			case <-t.C:
			}
			<-c.writeMu
		case <-c.peer.closed:
		case <-c.closed:
		case <-t.C:
		}
	}
	for {
		select {
		case <-c.gotClose:
			c.markClosed()
			return nil
		case <-c.closed:
			return nil
		case <-c.peer.closed:
			c.markClosed()
			return nil
		case <-t.C:
			c.markClosed()
			return errors.New("tunneltest: no close frame from the peer in time")
		case c.readMu <- struct{}{}:
			// No Read is in progress: wait for the reply here.
			err := c.awaitClose(t.C)
			<-c.readMu
			c.markClosed()
			return err
		}
	}
}

// awaitClose reads until the peer's close frame, dropping everything else.
func (c *Conn) awaitClose(timeout <-chan time.Time) error {
	for {
		select {
		case <-c.gotClose:
			return nil
		default:
		}
		select {
		case f := <-c.data:
			if f.kind == kindClose {
				c.mu.Lock()
				c.received = &tunnel.CloseError{Code: f.code, Reason: f.reason}
				c.mu.Unlock()
				c.gotCloseOnce.Do(func() { close(c.gotClose) })
				return nil
			}
		case <-c.ctl:
		case <-c.peer.closed:
			return nil
		case <-timeout:
			return errors.New("tunneltest: no close frame from the peer in time")
		}
	}
}

// CloseNow implements tunnel.MessageConn: the peer sees a lost connection.
func (c *Conn) CloseNow() error {
	c.closing.Store(true)
	c.markClosed()
	return nil
}

func (c *Conn) markClosed() { c.closeOnce.Do(func() { close(c.closed) }) }

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}
