package keyless

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"

	"github.com/postern-dev/postern/store/postgres/pgtest"
)

// TestReplicasOnPostgres runs two server replicas on one PostgreSQL
// database: a new replica needs only the first one's secrets key; an agent
// connected to replica A receives a key pushed through replica B and the
// login succeeds; A is killed with SIGKILL during a stream of pushes
// through both, the agent moves to B, and afterwards the audit chain
// verifies and every push that returned success has its audit record.
func TestReplicasOnPostgres(t *testing.T) {
	w := buildWorld(t, false, pgtest.URL(t))

	// Replica B starts from a data directory holding only A's secrets
	// key, and takes the cluster's other keys from the database.
	bProc, bURL, bDir := w.startReplica(t)
	for _, f := range []string{"ca.pem", "keysigning.key", "audit.key", "audit.pub"} {
		a, errA := os.ReadFile(filepath.Join(w.dataDir, f))
		b, errB := os.ReadFile(filepath.Join(bDir, f))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("replicas A and B have different %s (%v, %v)", f, errA, errB)
		}
	}
	// b is the world as seen through replica B.
	b := *w
	b.URL = bURL
	b.env = maps.Clone(w.env)
	b.env["AWS_ENDPOINT_URL"] = bURL

	w.servers = w.URL + "," + bURL
	if !t.Run("Activation", w.testActivation) {
		t.FailNow()
	}
	w.startAgent(t)
	if !strings.Contains(w.agent.Stderr.String(), `msg="connected to server" server=`+w.URL) {
		t.Fatalf("the agent did not connect to replica A (the first of its servers):\n%s", w.agent.Stderr)
	}
	w.startSSHD(t)
	w.waitState(t, "running", 30*time.Second)

	t.Run("PushThroughTheOtherReplica", func(t *testing.T) {
		r := retrySlow(t, "postern ssh through replica B", func() result {
			return b.postern(t, "ssh", "--instance-id", w.instanceID, "--os-user", "alice", "--", "id", "-un")
		})
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alice" {
			t.Fatalf("postern ssh through replica B to the agent on A: %s\nA's log:\n%s\nB's log:\n%s", r, w.server.Stderr, bProc.Stderr)
		}
	})

	t.Run("KillReplicaMidStream", func(t *testing.T) {
		succeeded := pushThroughKill(t, w, &b, bProc)
		// The chain verifies, and holds every push that returned success.
		r := b.postern(t, "audit", "verify", "--public-key", filepath.Join(bDir, "audit.pub"))
		if r.Code != 0 {
			t.Fatalf("postern audit verify after replica A was killed: %s", r)
		}
		var out struct {
			Events []struct{ CloudTrailEvent map[string]any }
		}
		b.mustPosternJSON(t, &out, "audit", "lookup", "--event-name", "SendSSHPublicKey", "--max", "5000")
		audited := map[string]bool{}
		for _, ev := range out.Events {
			if str(ev.CloudTrailEvent, "errorCode") == "" {
				audited[str(ev.CloudTrailEvent, "requestID")] = true
			}
		}
		missing := 0
		for _, id := range succeeded {
			if !audited[id] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%d of %d pushes that returned success have no successful audit record", missing, len(succeeded))
		}
		t.Logf("%d pushes returned success across the kill; all audited", len(succeeded))
	})

	t.Run("LoginAfterTheMove", func(t *testing.T) {
		r := retrySlow(t, "postern ssh through replica B after A died", func() result {
			return b.postern(t, "ssh", "--instance-id", w.instanceID, "--os-user", "alice", "--", "id", "-un")
		})
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alice" {
			t.Fatalf("postern ssh through replica B after A died: %s", r)
		}
	})
}

// pushThroughKill streams pushes through replicas A and B, kills A with
// SIGKILL once both have delivered some, waits for the agent to move to
// B and for B to deliver more, and returns the request ids of every push
// that returned success.
func pushThroughKill(t *testing.T, a, b *world, bProc *proc) []string {
	t.Helper()
	const (
		before   = 10  // successes through each replica before the kill
		after    = 10  // successes through B after the agent moved
		maxEach  = 400 // pushes per replica, at most
		deadline = 90 * time.Second
	)
	type outcome struct {
		via       string
		requestID string
		ok        bool
	}
	pub := newKey(t).Pub
	results := make(chan outcome, 2*maxEach)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for via, c := range map[string]*ec2instanceconnect.Client{"A": a.adminEIC(), "B": b.adminEIC()} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range maxEach {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				out, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
					InstanceId: aws.String(a.instanceID), InstanceOSUser: aws.String("alice"), SSHPublicKey: aws.String(pub),
				})
				cancel()
				o := outcome{via: via}
				if err == nil && out.Success {
					o.ok, o.requestID = true, aws.ToString(out.RequestId)
				}
				results <- o
			}
		}()
	}
	var succeeded []string
	count := map[string]int{}
	killed, moved := false, false
	agentFrom := 0
	movedCh := make(chan struct{})
	timeout := time.After(deadline)
	for !(moved && count["B-after"] >= after) {
		select {
		case o := <-results:
			if o.ok {
				succeeded = append(succeeded, o.requestID)
				count[o.via]++
				if moved && o.via == "B" {
					count["B-after"]++
				}
			}
		case <-movedCh:
			moved, movedCh = true, nil
			count["B-after"] = 0
		case <-timeout:
			close(stop)
			t.Fatalf("after %s: %v successes (killed %v, agent moved %v)\nagent log:\n%s\nB's log:\n%s", deadline, count, killed, moved, a.agent.Stderr, bProc.Stderr)
		}
		if !killed && count["A"] >= before && count["B"] >= before {
			agentFrom = a.agent.Stderr.Len()
			if err := a.server.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			a.serverKilled, killed = true, true
			go func(ch chan struct{}) {
				if _, _, ok := a.agent.Stderr.await(agentFrom, `msg="connected to server" server=`+b.URL, a.agent.exited, deadline); ok {
					close(ch)
				}
			}(movedCh)
		}
	}
	close(stop)
	wg.Wait()
	close(results)
	for o := range results {
		if o.ok {
			succeeded = append(succeeded, o.requestID)
		}
	}
	t.Logf("pushes that returned success: %d through A before it died, %d through B (%d after the agent moved)", count["A"], count["B"], count["B-after"])
	return succeeded
}

// startReplica starts a second server replica on the world's store, from
// a data directory that holds only the first one's secrets key, and stops
// it (asserting a clean exit) when the test ends.
func (w *world) startReplica(t *testing.T) (p *proc, url, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	secrets, err := os.ReadFile(filepath.Join(w.dataDir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "secrets.key"), secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	p, url = w.startServerProc(t, dataDir)
	t.Cleanup(func() {
		if err := p.stop(t); err != nil {
			t.Errorf("replica at %s exited with %v; want exit status 0\nlog:\n%s", url, err, p.Stderr)
		}
	})
	return p, url, dataDir
}
