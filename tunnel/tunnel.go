// Package tunnel is the data plane of OpenTunnel: it carries one TCP stream
// over a message connection (a WebSocket in production) as binary frames,
// enforces the protocol's rules and the tunnel's limits, and says how and
// why the tunnel ended.
//
// The core, Pipe, works on the MessageConn interface and a net.Conn, so it
// is tested over an in-memory pair (package tunneltest) as well as over a
// real WebSocket; WebSocket adapts a coder/websocket connection.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MessageType is the type of a WebSocket data message.
type MessageType int

// Message types, numbered as their WebSocket opcodes.
const (
	MessageText   MessageType = 1
	MessageBinary MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case MessageText:
		return "text"
	case MessageBinary:
		return "binary"
	}
	return fmt.Sprintf("MessageType(%d)", int(t))
}

// StatusCode is a WebSocket close code (RFC 6455 section 7.4).
type StatusCode int

// Close codes used by tunnels.
const (
	StatusNormalClosure   StatusCode = 1000 // the tunnel ended normally
	StatusGoingAway       StatusCode = 1001 // the endpoint is stopping or the endpoint was deleted
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003 // a TEXT frame
	StatusNoStatus        StatusCode = 1005 // a close frame without a code; never sent
	StatusAbnormalClosure StatusCode = 1006 // the connection was lost without a close frame; never sent
	StatusPolicyViolation StatusCode = 1008 // a limit of the tunnel, such as its maximum duration
	StatusMessageTooBig   StatusCode = 1009 // a frame over the size limit
	StatusInternalError   StatusCode = 1011 // the target connection failed
)

// sendable reports whether c may appear in a close frame.
func (c StatusCode) sendable() bool {
	switch {
	case c == 1004 || c == StatusNoStatus || c == StatusAbnormalClosure || c == 1015:
		return false
	case c >= 1000 && c <= 1014, c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// CloseError is a close frame: returned by MessageConn.Read when the peer
// closed the connection, and accepted as the cause of a cancelled context
// (context.WithCancelCause) to choose how Pipe closes the tunnel.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed with status %d: %q", int(e.Code), e.Reason)
}

// ErrMessageTooBig is returned (wrapped) by MessageConn.Read for a message
// over the connection's size limit. The connection must then be closed.
var ErrMessageTooBig = errors.New("message too big")

// MessageConn is a message-oriented connection to the client: a WebSocket
// or a stand-in.
//
// Read is called by one goroutine at a time. Write, Ping, Close and CloseNow
// may be called concurrently with Read and with each other. Pings are
// answered, and pongs noticed, only while a Read is in progress.
type MessageConn interface {
	// Read returns the next data message. data is valid until the next call
	// to Read. When the peer closed the connection, the error is a
	// *CloseError; for a message over the size limit it wraps
	// ErrMessageTooBig; a lost connection gives any other error.
	Read(ctx context.Context) (typ MessageType, data []byte, err error)
	// Write sends one message; p may be reused once Write returns.
	Write(ctx context.Context, typ MessageType, p []byte) error
	// Ping sends a ping and waits for the pong.
	Ping(ctx context.Context) error
	// Close sends a close frame with code and reason, waits a bounded time
	// for the peer's, and closes the connection.
	Close(code StatusCode, reason string) error
	// CloseNow closes the connection without a close frame.
	CloseNow() error
}

// Defaults for Limits.
const (
	DefaultMaxDuration  = time.Hour
	DefaultMaxFrame     = 65000
	DefaultPingInterval = 30 * time.Second
	DefaultDrainTimeout = 2 * time.Second
)

// Limits bound a tunnel. Zero fields take their defaults.
type Limits struct {
	// MaxDuration ends the tunnel, with StatusPolicyViolation, when it has
	// been open this long.
	MaxDuration time.Duration
	// MaxFrame is the largest message the client may send, in bytes.
	MaxFrame int
	// PingInterval is how often the client is pinged, so that idle tunnels
	// survive middleboxes, and how long it has to answer when nothing else
	// shows that it is alive. Negative disables pings.
	PingInterval time.Duration
	// DrainTimeout bounds how long, after the client closed, Pipe waits for
	// the target to finish reading and close its side.
	DrainTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxDuration <= 0 {
		l.MaxDuration = DefaultMaxDuration
	}
	if l.MaxFrame <= 0 {
		l.MaxFrame = DefaultMaxFrame
	}
	if l.PingInterval == 0 {
		l.PingInterval = DefaultPingInterval
	}
	if l.DrainTimeout <= 0 {
		l.DrainTimeout = DefaultDrainTimeout
	}
	return l
}

// maxReason is the most a close frame can carry as a reason (125 bytes of
// payload less the code).
const maxReason = 123

// closeReason makes s fit a close frame: valid UTF-8 of at most 123 bytes,
// cut at a rune boundary.
func closeReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// chunkSize is the most Pipe reads from the target into one frame.
const chunkSize = 32 << 10

// bufSize is the size of pooled buffers: a chunk from the target, or a
// message from the client of up to 65,535 bytes plus the one byte that
// shows it was too big.
const bufSize = 64 << 10

// buffers recycles message and chunk buffers, so that an idle tunnel holds
// none of them.
var buffers = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
