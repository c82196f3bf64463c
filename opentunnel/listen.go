package opentunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/postern-dev/postern/tunnel"
)

// DefaultMaxConnections is how many tunnels a Listener keeps open at once
// unless told otherwise, as the AWS CLI's --max-websocket-connections.
const DefaultMaxConnections = 10

// Listener serves local TCP connections (open-tunnel --local-port): each
// accepted connection gets a tunnel of its own, opened with a freshly
// signed URL, for as long as the connection lasts.
type Listener struct {
	// Open opens one tunnel: presign, then Dial.
	Open func(ctx context.Context) (tunnel.MessageConn, error)
	// MaxConnections bounds the tunnels open at once; connections over it
	// are closed at once. Zero means DefaultMaxConnections.
	MaxConnections int
	// Log receives a line for the user per connection event; nil discards
	// them.
	Log io.Writer

	logMu sync.Mutex
}

func (l *Listener) logf(format string, args ...any) {
	if l.Log == nil {
		return
	}
	l.logMu.Lock()
	defer l.logMu.Unlock()
	fmt.Fprintf(l.Log, format+"\n", args...)
}

// Serve accepts connections on ln until ctx is done or ln fails, then
// closes ln and every tunnel (code 1001) and returns. It returns nil when
// ctx ended it.
func (l *Listener) Serve(ctx context.Context, ln net.Listener) error {
	max := l.MaxConnections
	if max <= 0 {
		max = DefaultMaxConnections
	}
	slots := make(chan struct{}, max)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	for id := 1; ; id++ {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			l.logf("[%d] Refused a connection from %s: %d tunnels are open, the most --max-websocket-connections allows.", id, conn.RemoteAddr(), max)
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			l.serveConn(ctx, id, conn)
		}()
	}
}

func (l *Listener) serveConn(ctx context.Context, id int, conn net.Conn) {
	defer conn.Close()
	l.logf("[%d] Accepted a connection from %s; opening a tunnel.", id, conn.RemoteAddr())
	ws, err := l.Open(ctx)
	if err != nil {
		l.logf("[%d] Cannot open the tunnel: %v", id, err)
		return
	}
	err = Relay(ctx, ws, conn, conn)
	// Ends Relay's reader of conn, if it is still reading.
	conn.Close()
	if err != nil && ctx.Err() == nil {
		l.logf("[%d] Tunnel closed: %v", id, err)
		return
	}
	l.logf("[%d] Tunnel closed.", id)
}
