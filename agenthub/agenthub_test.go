package agenthub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/agentproto"
	"github.com/postern-dev/postern/keyrecord"
)

const instance = "i-0123456789abcdef0"

type fixture struct {
	hub          *Hub
	priv         ed25519.PrivateKey
	mu           sync.Mutex
	connected    []string
	disconnected chan string
	refused      chan error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	f := &fixture{priv: priv, disconnected: make(chan string, 4), refused: make(chan error, 4)}
	f.hub = New(Callbacks{
		KeyFor: func(_ context.Context, id string) (ed25519.PublicKey, error) {
			if id != instance {
				return nil, errors.New("unknown instance")
			}
			return pub, nil
		},
		Connected: func(_ context.Context, id string, r agentproto.Report) error {
			f.mu.Lock()
			f.connected = append(f.connected, id+"/"+r.Hostname)
			f.mu.Unlock()
			return nil
		},
		Disconnected: func(id string) { f.disconnected <- id },
		Refused:      func(_ string, err error) { f.refused <- err },
	}, time.Second, nil)
	return f
}

// agent runs a fake agent over one end of a pipe; answer decides each ack.
func (f *fixture) agent(t *testing.T, ctx context.Context, key ed25519.PrivateKey, answer func(agentproto.Push) agentproto.Ack) (serveErr chan error, agentConn *agentproto.Conn) {
	t.Helper()
	a, b := net.Pipe()
	serveErr = make(chan error, 1)
	go func() { serveErr <- f.hub.Serve(ctx, a) }()
	agentConn = agentproto.NewConn(b)
	t.Cleanup(func() { agentConn.Close() })
	if _, err := agentproto.AgentHandshake(agentConn, instance, key, agentproto.Report{Hostname: "web-1"}, "test"); err != nil {
		return serveErr, agentConn // an impostor; the test checks serveErr
	}
	if answer == nil {
		return serveErr, agentConn // the test reads the connection itself
	}
	go func() {
		for {
			env, err := agentConn.Recv()
			if err != nil {
				return
			}
			if env.Type == agentproto.TypePush {
				var p agentproto.Push
				env.Decode(&p)
				agentConn.Send(agentproto.TypeAck, env.ID, answer(p))
			}
		}
	}()
	return serveErr, agentConn
}

func TestPushWaitsForAck(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan keyrecord.Signed, 1)
	serveErr, _ := f.agent(t, ctx, f.priv, func(p agentproto.Push) agentproto.Ack {
		got <- p.Record
		if string(p.Record.Payload) == "refuse" {
			return agentproto.Ack{Error: "signature does not verify"}
		}
		return agentproto.Ack{}
	})
	if !f.hub.Connected(instance) {
		t.Fatal("not connected after handshake")
	}
	rec := keyrecord.Signed{Payload: []byte("record"), Signature: []byte("sig")}
	if err := f.hub.Push(ctx, instance, rec); err != nil {
		t.Fatalf("push: %v", err)
	}
	if r := <-got; string(r.Payload) != "record" {
		t.Errorf("agent got %q", r.Payload)
	}
	err := f.hub.Push(ctx, instance, keyrecord.Signed{Payload: []byte("refuse")})
	if err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Errorf("refused push: err = %v", err)
	}
	<-got
	if err := f.hub.Push(ctx, "i-0fffffffffffffff0", rec); !errors.Is(err, ErrNotConnected) {
		t.Errorf("push to an absent agent: err = %v", err)
	}
	cancel()
	if err := <-serveErr; err != nil {
		t.Errorf("serve: %v", err)
	}
	if id := <-f.disconnected; id != instance {
		t.Errorf("disconnected %q", id)
	}
	if f.hub.Connected(instance) {
		t.Error("still connected after the session ended")
	}
}

func TestPushFailsWhenAgentVanishes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// An agent that never acknowledges, then hangs up.
	_, conn := f.agent(t, ctx, f.priv, nil)
	done := make(chan error, 1)
	go func() { done <- f.hub.Push(ctx, instance, keyrecord.Signed{Payload: []byte("x")}) }()
	env, err := conn.Recv()
	if err != nil || env.Type != agentproto.TypePush {
		t.Fatalf("agent got %v %v", env, err)
	}
	conn.Close()
	if err := <-done; !errors.Is(err, ErrNotConnected) {
		t.Errorf("err = %v, want ErrNotConnected", err)
	}
}

func TestPushHonoursContext(t *testing.T) {
	f := newFixture(t)
	_, conn := f.agent(t, context.Background(), f.priv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.hub.Push(ctx, instance, keyrecord.Signed{Payload: []byte("x")}) }()
	if _, err := conn.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestImpostorIsRefused(t *testing.T) {
	f := newFixture(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	serveErr, _ := f.agent(t, context.Background(), other, nil)
	if err := <-serveErr; !errors.Is(err, agentproto.ErrIdentity) {
		t.Errorf("serve: %v", err)
	}
	if err := <-f.refused; !errors.Is(err, agentproto.ErrIdentity) {
		t.Errorf("refused callback: %v", err)
	}
	if f.hub.Connected(instance) {
		t.Error("impostor registered as connected")
	}
}

func TestReconnectReplacesOldSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	firstErr, _ := f.agent(t, ctx, f.priv, func(agentproto.Push) agentproto.Ack { return agentproto.Ack{Error: "old"} })
	f.agent(t, ctx, f.priv, func(agentproto.Push) agentproto.Ack { return agentproto.Ack{} })
	if err := <-firstErr; err != nil {
		t.Logf("old session ended: %v", err)
	}
	<-f.disconnected
	if !f.hub.Connected(instance) {
		t.Fatal("the new session was dropped with the old one")
	}
	if err := f.hub.Push(ctx, instance, keyrecord.Signed{Payload: []byte("x")}); err != nil {
		t.Errorf("push went to the old session: %v", err)
	}
}
