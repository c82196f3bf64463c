package keyless

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/store/postgres/pgtest"
)

// TestEndpointRelayAcrossReplicas runs two server replicas on PostgreSQL
// and one relay-mode endpoint process whose control connection goes to
// replica A. A client that opens a tunnel at replica B is served: B routes
// the dial to A's process through the database, and the process dials B
// back. Then A is killed with SIGKILL mid-tunnel: the tunnel through B
// carries on, the process moves to B, and new tunnels open there.
func TestEndpointRelayAcrossReplicas(t *testing.T) {
	w := newEiceWorld(t, pgtest.URL(t))
	_, bURL, _ := w.startReplica(t)
	w.endpointServers = w.URL + "," + bURL
	w.endpoint = w.startEndpointProc(t, "relay")
	// The endpoint joined through A, so its DnsName is A's address: the
	// one name of the control plane, as a load balancer's would be.
	// Clients sign for it, and this "load balancer" sends them to B.
	w.tunnelHost = strings.TrimPrefix(w.URL, "https://")
	bAddr := strings.TrimPrefix(bURL, "https://")

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	keyID, secret := w.env["AWS_ACCESS_KEY_ID"], w.env["AWS_SECRET_ACCESS_KEY"]
	open := func(what string) net.Conn {
		t.Helper()
		var c *websocket.Conn
		// B learns of the process on A within a heartbeat.
		waitFor(t, what, 30*time.Second, func() bool {
			var err error
			c, _, err = w.dialTunnelVia(ctx, w.tunnelURL(t, keyID, secret, 22, 0), bAddr)
			if err != nil && !strings.Contains(err.Error(), "is not connected to the server") {
				t.Fatalf("%s: %v", what, err)
			}
			return err == nil
		})
		nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Fatalf("%s: sshd's banner %q, %v", what, line, err)
		}
		return nc
	}
	if log := w.endpoint.Stderr.String(); !strings.Contains(log, `msg="control connection open" server=`+w.URL) || strings.Contains(log, "server="+bURL) {
		t.Fatalf("the endpoint process is not connected to A alone:\n%s", log)
	}
	through := open("a tunnel at replica B through the process on A")
	defer through.Close()

	// A change made through B reaches the process connected to A.
	b := *w.world
	b.env = maps.Clone(w.env)
	b.env["AWS_ENDPOINT_URL"] = bURL
	from := w.endpoint.Stderr.Len()
	b.mustPostern(t, "endpoint", "modify", "--max-connections", "7", w.endpointID)
	w.endpoint.await(t, from, "max_connections=7", 30*time.Second)

	// Replica A dies; the tunnel's two legs are on B and the endpoint.
	from = w.endpoint.Stderr.Len()
	if err := w.server.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	w.serverKilled = true
	if _, err := io.WriteString(through, "SSH-2.0-postern-replica-test\r\n"); err != nil {
		t.Fatalf("the tunnel through B after A died: write: %v", err)
	}
	buf := make([]byte, 64)
	if n, err := through.Read(buf); err != nil || n == 0 {
		t.Fatalf("the tunnel through B after A died: no key exchange from sshd: %v", err)
	}

	// The process moves its control connection to B, and B serves new
	// tunnels with it directly.
	w.endpoint.await(t, from, `msg="control connection open" server=`+bURL, 60*time.Second)
	again := open("a tunnel at replica B after A died")
	again.Close()

	// Deleting the endpoint through B closes the process's tunnels, and
	// the deletion completes.
	through.Close()
	from = w.endpoint.Stderr.Len()
	b.mustPostern(t, "endpoint", "delete", w.endpointID)
	waitFor(t, "the endpoint's deletion to complete", 30*time.Second, func() bool {
		var out struct {
			InstanceConnectEndpoints []struct{ State string }
		}
		b.mustPosternJSON(t, &out, "endpoint", "list", w.endpointID)
		return len(out.InstanceConnectEndpoints) == 1 && out.InstanceConnectEndpoints[0].State == "delete-complete"
	})
	if !w.endpoint.hasExited() {
		w.endpoint.await(t, from, "deleted", 30*time.Second)
	}
}
