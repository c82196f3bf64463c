package cluster

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/agenthub"
	"github.com/postern-dev/postern/keyrecord"
	"github.com/postern-dev/postern/store/postgres"
	"github.com/postern-dev/postern/store/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fakeHub holds the sessions a test says it holds and records pushes.
type fakeHub struct {
	mu     sync.Mutex
	held   map[string]bool
	pushed []string
	refuse error
}

func (h *fakeHub) Push(ctx context.Context, id string, rec keyrecord.Signed) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.held[id] {
		return agenthub.ErrNotConnected
	}
	if h.refuse != nil {
		return h.refuse
	}
	h.pushed = append(h.pushed, id+":"+string(rec.Payload))
	return nil
}

func (h *fakeHub) Connected(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held[id]
}

func (h *fakeHub) pushes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.pushed...)
}

// replica joins a cluster on url with its own hub; it leaves when the
// test ends or stop is called.
func replica(t *testing.T, url string, hub *fakeHub) (c *Cluster, stop func()) {
	t.Helper()
	st, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w, _ := st.DBs()
	ctx, cancel := context.WithCancel(context.Background())
	c, err = New(ctx, ctx, Config{URL: url, DB: w, Hub: hub})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	beating := make(chan struct{})
	beatDone := make(chan struct{})
	go func() {
		defer close(beatDone)
		once := false
		c.Heartbeat(ctx, func(int) {
			if !once {
				once = true
				close(beating)
			}
		})
	}()
	<-beating // the replica is on record as alive
	stop = func() { cancel(); <-c.Done(); <-beatDone }
	t.Cleanup(stop)
	return c, stop
}

func TestPushReachesTheReplicaThatHoldsTheAgent(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	hubA, hubB := &fakeHub{held: map[string]bool{}}, &fakeHub{held: map[string]bool{"i-b": true}}
	a, _ := replica(t, url, hubA)
	b, stopB := replica(t, url, hubB)
	if err := b.Hold(ctx, "i-b"); err != nil {
		t.Fatal(err)
	}
	rec := keyrecord.Signed{Payload: []byte("key-1")}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Push(pctx, "i-b", rec); err != nil {
		t.Fatalf("push through A to the agent held by B: %v", err)
	}
	if got := hubB.pushes(); len(got) != 1 || got[0] != "i-b:key-1" {
		t.Errorf("B's hub got %v, want the one record", got)
	}

	// B's agent refuses: A hears it, and it is not a success.
	hubB.mu.Lock()
	hubB.refuse = errors.New("agent refused the key: expired")
	hubB.mu.Unlock()
	if err := a.Push(pctx, "i-b", rec); err == nil {
		t.Error("a push B's agent refused returned success through A")
	}

	// A replica that died without a word (its heartbeat is stale) still
	// holds i-stale on record: ErrNotConnected at once, not a wait for
	// an answer that will not come.
	stale := time.Now().Add(-time.Minute).UnixNano()
	if _, err := a.cfg.DB.ExecContext(ctx, `INSERT INTO replicas (id, seen_at) VALUES ('dead', ?)`, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cfg.DB.ExecContext(ctx, `INSERT INTO agent_sessions (instance_id, replica_id, since) VALUES ('i-stale', 'dead', ?)`, stale); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(pctx, "i-stale", rec); !errors.Is(err, agenthub.ErrNotConnected) {
		t.Errorf("push to an agent held by a dead replica: %v, want ErrNotConnected", err)
	}

	// No replica holds i-none: ErrNotConnected at once.
	if err := a.Push(pctx, "i-none", rec); !errors.Is(err, agenthub.ErrNotConnected) {
		t.Errorf("push to an agent no replica holds: %v, want ErrNotConnected", err)
	}

	// B is gone (its row stays, as after kill -9): the push waits out its
	// deadline and fails, never a false success.
	stopB()
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if err := a.Push(short, "i-b", rec); err == nil {
		t.Error("a push routed to a dead replica returned success")
	}

	// The agent reconnects to A: A holds it now and pushes locally.
	hubA.mu.Lock()
	hubA.held["i-b"] = true
	hubA.mu.Unlock()
	if err := a.Hold(ctx, "i-b"); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(pctx, "i-b", rec); err != nil {
		t.Fatalf("push to the agent now on A: %v", err)
	}
}

func TestReleaseKeepsAHandOver(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	hubA, hubB := &fakeHub{held: map[string]bool{}}, &fakeHub{held: map[string]bool{}}
	a, _ := replica(t, url, hubA)
	b, _ := replica(t, url, hubB)
	holder := func() string {
		var r string
		w := a.cfg.DB
		if err := w.QueryRowContext(ctx, `SELECT replica_id FROM agent_sessions WHERE instance_id = 'i-1'`).Scan(&r); err != nil {
			return ""
		}
		return r
	}
	if err := a.Hold(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
	// The agent moved to B before A saw its old session end.
	if err := b.Hold(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
	if h := holder(); h != b.ID() {
		t.Errorf("after A released a session B took over, the holder is %q, want B (%s)", h, b.ID())
	}
	if err := b.Release(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
	if h := holder(); h != "" {
		t.Errorf("after B released it, the holder is %q, want none", h)
	}
}

func TestEndpointChangesReachEveryReplica(t *testing.T) {
	url := pgtest.URL(t)
	heard := make(chan string, 4)
	join := func(name string) *Cluster {
		st, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		w, _ := st.DBs()
		ctx, cancel := context.WithCancel(context.Background())
		c, err := New(ctx, ctx, Config{URL: url, DB: w, Hub: &fakeHub{held: map[string]bool{}},
			OnEndpointChange: func(id string) { heard <- name + ":" + id }})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); <-c.Done() })
		return c
	}
	a := join("A")
	join("B")
	if err := a.EndpointChanged(context.Background(), "eice-0123456789abcdef0"); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case h := <-heard:
			got[h] = true
		case <-timeout:
			t.Fatalf("after 10 s the replicas heard %v, want A and B", got)
		}
	}
	if !got["A:eice-0123456789abcdef0"] || !got["B:eice-0123456789abcdef0"] {
		t.Errorf("heard %v", got)
	}
}
