package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/coder/websocket"
)

// RequestIDHeader carries the request id on handshake responses, as AWS's
// endpoints do.
const RequestIDHeader = "x-amzn-RequestId"

// WebSocket adapts a coder/websocket connection to MessageConn.
type WebSocket struct {
	c   *websocket.Conn
	max int
	// buf holds the message last returned by Read, when it came from the
	// pool; only Read touches it.
	buf *[]byte
	// big is the buffer for limits too large for the pool's buffers.
	big []byte
}

// NewWebSocket wraps c. Read refuses messages over maxMessage bytes
// (DefaultMaxFrame when zero) with ErrMessageTooBig, without buffering
// them whole.
func NewWebSocket(c *websocket.Conn, maxMessage int) *WebSocket {
	if maxMessage <= 0 {
		maxMessage = DefaultMaxFrame
	}
	// Read enforces the limit itself, so that the close frame that follows
	// is Pipe's, with Pipe's reason, rather than the library's.
	c.SetReadLimit(-1)
	return &WebSocket{c: c, max: maxMessage}
}

// Accept completes the OpenTunnel WebSocket handshake on an authorized
// request: no compression, no subprotocol, the request id in the
// x-amzn-RequestId response header, client messages of at most
// DefaultMaxFrame bytes. On failure the response has been written.
func Accept(w http.ResponseWriter, r *http.Request, requestID string) (*WebSocket, error) {
	if requestID != "" {
		w.Header().Set(RequestIDHeader, requestID)
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, err
	}
	return NewWebSocket(c, DefaultMaxFrame), nil
}

// Conn returns the underlying connection.
func (w *WebSocket) Conn() *websocket.Conn { return w.c }

// Read implements MessageConn.
func (w *WebSocket) Read(ctx context.Context) (MessageType, []byte, error) {
	w.release()
	typ, r, err := w.c.Reader(ctx)
	if err != nil {
		return 0, nil, wsError(err)
	}
	var b []byte
	if w.max+1 <= bufSize {
		w.buf = buffers.Get().(*[]byte)
		b = (*w.buf)[:w.max+1]
	} else {
		if w.big == nil {
			w.big = make([]byte, w.max+1)
		}
		b = w.big
	}
	// One byte more than the limit tells a message that is too big.
	n, err := io.ReadFull(r, b)
	switch {
	case err == nil:
		w.release()
		return MessageType(typ), nil, fmt.Errorf("%w: more than %d bytes", ErrMessageTooBig, w.max)
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		// The message's own end, as the reader reports it. A connection
		// lost in mid-frame is an error that wraps io.ErrUnexpectedEOF:
		// the part that arrived is no message.
		return MessageType(typ), b[:n], nil
	}
	w.release()
	return 0, nil, wsError(err)
}

func (w *WebSocket) release() {
	if w.buf != nil {
		buffers.Put(w.buf)
		w.buf = nil
	}
}

// Write implements MessageConn.
func (w *WebSocket) Write(ctx context.Context, typ MessageType, p []byte) error {
	return wsError(w.c.Write(ctx, websocket.MessageType(typ), p))
}

// Ping implements MessageConn.
func (w *WebSocket) Ping(ctx context.Context) error { return wsError(w.c.Ping(ctx)) }

// Close implements MessageConn.
func (w *WebSocket) Close(code StatusCode, reason string) error {
	return w.c.Close(websocket.StatusCode(code), closeReason(reason))
}

// CloseNow implements MessageConn.
func (w *WebSocket) CloseNow() error { return w.c.CloseNow() }

// wsError turns the library's close frames into *CloseError.
func wsError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: StatusCode(ce.Code), Reason: ce.Reason}
	}
	return err
}
