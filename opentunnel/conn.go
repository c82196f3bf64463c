package opentunnel

import (
	"context"
	"net"

	"github.com/postern-dev/postern/tunnel"
)

// Conn returns a net.Conn that carries a byte stream over an open tunnel,
// for a client inside this process (the web console's SSH client): what
// is written to it goes to the endpoint, and what the endpoint sends is
// read from it, by Relay, with Relay's frames and endings. Closing the
// conn ends the tunnel normally (1000); when the endpoint ends it, reads
// return io.EOF. ended receives Relay's result once the tunnel is over,
// nil or why it ended otherwise (a *ClosedError with the endpoint's code
// and reason, a lost connection).
//
// The conn is synchronous, like net.Pipe: a write returns once the relay
// has taken the bytes.
func Conn(ws tunnel.MessageConn) (conn net.Conn, ended <-chan error) {
	local, remote := net.Pipe()
	done := make(chan error, 1)
	go func() {
		err := Relay(context.Background(), ws, remote, remote)
		// Ends the local side's reads, and a Relay reader still waiting.
		remote.Close()
		done <- err
	}()
	return local, done
}
