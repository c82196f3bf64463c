package tunneltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/tunnel"
)

// MakePair returns the two ends of a fresh connection whose messages of up
// to tunnel.DefaultMaxFrame bytes are accepted both ways. It arranges for
// their cleanup.
type MakePair func(t *testing.T) (a, b tunnel.MessageConn)

// TestMessageConn checks that an implementation of tunnel.MessageConn
// behaves as Pipe expects.
func TestMessageConn(t *testing.T, makePair MakePair) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, makePair) })
	t.Run("WriteCopies", func(t *testing.T) { testWriteCopies(t, makePair) })
	t.Run("Close", func(t *testing.T) { testClose(t, makePair) })
	t.Run("CloseAfterMessages", func(t *testing.T) { testCloseAfterMessages(t, makePair) })
	t.Run("CloseWhileReading", func(t *testing.T) { testCloseWhileReading(t, makePair) })
	t.Run("CloseNow", func(t *testing.T) { testCloseNow(t, makePair) })
	t.Run("Ping", func(t *testing.T) { testPing(t, makePair) })
	t.Run("PingUnanswered", func(t *testing.T) { testPingUnanswered(t, makePair) })
	t.Run("ReadContext", func(t *testing.T) { testReadContext(t, makePair) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, makePair) })
}

// timeout bounds every wait in the suite, so that a broken implementation
// fails instead of hanging.
const timeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// async runs f in a goroutine and returns a channel for its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func wait(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not return within %v", what, timeout)
		return nil
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func testRoundTrip(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	type msg struct {
		typ  tunnel.MessageType
		data []byte
	}
	msgs := []msg{
		{tunnel.MessageBinary, pattern(1, 1)},
		{tunnel.MessageBinary, nil},
		{tunnel.MessageText, []byte("text keeps its type ✓")},
		{tunnel.MessageBinary, pattern(1000, 2)},
		{tunnel.MessageBinary, pattern(tunnel.DefaultMaxFrame, 3)},
	}
	for _, dir := range []struct {
		name     string
		from, to tunnel.MessageConn
	}{{"a→b", a, b}, {"b→a", b, a}} {
		sent := async(func() error {
			for _, m := range msgs {
				if err := dir.from.Write(ctx, m.typ, m.data); err != nil {
					return err
				}
			}
			return nil
		})
		for i, m := range msgs {
			typ, data, err := dir.to.Read(ctx)
			if err != nil {
				t.Fatalf("%s: message %d: %v", dir.name, i, err)
			}
			if typ != m.typ || !bytes.Equal(data, m.data) {
				t.Fatalf("%s: message %d: got %v of %d bytes, want %v of %d", dir.name, i, typ, len(data), m.typ, len(m.data))
			}
		}
		if err := wait(t, sent, "Write"); err != nil {
			t.Fatalf("%s: %v", dir.name, err)
		}
	}
}

func testWriteCopies(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	p := []byte("original")
	if err := a.Write(ctx, tunnel.MessageBinary, p); err != nil {
		t.Fatal(err)
	}
	copy(p, "REUSED!!")
	_, data, err := b.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "original" {
		t.Fatalf("read %q after the writer reused its buffer", data)
	}
}

func testClose(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	const reason = "unsupported: ü" // reasons are UTF-8
	closed := async(func() error { return a.Close(tunnel.StatusUnsupportedData, reason) })
	_, _, err := b.Read(ctx)
	var ce *tunnel.CloseError
	if !errors.As(err, &ce) || ce.Code != tunnel.StatusUnsupportedData || ce.Reason != reason {
		t.Fatalf("peer's Read = %v, want close %d %q", err, tunnel.StatusUnsupportedData, reason)
	}
	if err := wait(t, closed, "Close"); err != nil {
		t.Fatalf("Close = %v once the peer answered", err)
	}
	if err := a.Write(ctx, tunnel.MessageBinary, []byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := b.Write(ctx, tunnel.MessageBinary, []byte("x")); err == nil {
		t.Error("Write after receiving a close frame succeeded")
	}
	if _, _, err := a.Read(ctx); err == nil {
		t.Error("Read after Close succeeded")
	}
	if _, _, err := b.Read(ctx); err == nil {
		t.Error("Read after the close handshake succeeded")
	}
}

func testCloseAfterMessages(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	closed := async(func() error {
		for i := range 3 {
			if err := a.Write(ctx, tunnel.MessageBinary, []byte{byte(i)}); err != nil {
				return err
			}
		}
		return a.Close(tunnel.StatusNormalClosure, "bye")
	})
	for i := range 3 {
		_, data, err := b.Read(ctx)
		if err != nil || len(data) != 1 || data[0] != byte(i) {
			t.Fatalf("message %d: %v %v", i, data, err)
		}
	}
	_, _, err := b.Read(ctx)
	var ce *tunnel.CloseError
	if !errors.As(err, &ce) || ce.Code != tunnel.StatusNormalClosure || ce.Reason != "bye" {
		t.Fatalf("after the messages: %v, want the close frame", err)
	}
	if err := wait(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
}

// testCloseWhileReading closes an end whose Read is in progress: the Read
// sees the peer's answer, and Close returns.
func testCloseWhileReading(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	reading := async(func() error {
		_, _, err := a.Read(ctx)
		return err
	})
	peer := async(func() error {
		_, _, err := b.Read(ctx)
		return err
	})
	// Without a way to know that a's Read is blocked, Close may also come
	// first; both orders must work.
	if err := a.Close(tunnel.StatusGoingAway, "shutting down"); err != nil {
		t.Fatalf("Close = %v", err)
	}
	var ce *tunnel.CloseError
	if err := wait(t, peer, "peer's Read"); !errors.As(err, &ce) || ce.Code != tunnel.StatusGoingAway {
		t.Fatalf("peer's Read = %v, want close 1001", err)
	}
	if err := wait(t, reading, "Read"); err == nil {
		t.Fatal("Read returned a message after Close")
	}
}

func testCloseNow(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	reading := async(func() error {
		_, _, err := b.Read(ctx)
		return err
	})
	if err := a.CloseNow(); err != nil {
		t.Fatal(err)
	}
	err := wait(t, reading, "peer's Read")
	var ce *tunnel.CloseError
	if err == nil || errors.As(err, &ce) {
		t.Fatalf("peer's Read = %v, want a lost connection", err)
	}
	if _, _, err := a.Read(ctx); err == nil {
		t.Fatal("Read after CloseNow succeeded")
	}
}

func testPing(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	// Pongs are read by Read: keep both ends reading.
	for _, c := range []tunnel.MessageConn{a, b} {
		go func() {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	for i := range 3 {
		if err := a.Ping(ctx); err != nil {
			t.Fatalf("ping %d from a: %v", i, err)
		}
		if err := b.Ping(ctx); err != nil {
			t.Fatalf("ping %d from b: %v", i, err)
		}
	}
}

func testPingUnanswered(t *testing.T, makePair MakePair) {
	a, _ := makePair(t)
	// The peer never reads, so it never answers; a reads to see any pong.
	ctx := testContext(t)
	go func() {
		for {
			if _, _, err := a.Read(ctx); err != nil {
				return
			}
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := a.Ping(pctx); err == nil {
		t.Fatal("Ping was answered by a peer that does not read")
	}
}

func testReadContext(t *testing.T, makePair MakePair) {
	a, _ := makePair(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := a.Read(ctx); err == nil {
		t.Fatal("Read with a cancelled context succeeded")
	}
	a2, _ := makePair(t)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := wait(t, async(func() error { _, _, err := a2.Read(ctx); return err }), "Read"); err == nil {
		t.Fatal("Read past its deadline succeeded")
	}
}

func testConcurrentWriters(t *testing.T, makePair MakePair) {
	ctx := testContext(t)
	a, b := makePair(t)
	const writers, each = 4, 100
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				msg := fmt.Appendf(nil, "writer %d message %d %s", w, i, pattern(100+i, byte(w)))
				if err := a.Write(ctx, tunnel.MessageBinary, msg); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	next := make([]int, writers)
	for range writers * each {
		_, data, err := b.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var w, i int
		if _, err := fmt.Sscanf(string(data), "writer %d message %d ", &w, &i); err != nil {
			t.Fatalf("garbled message %q", data)
		}
		want := fmt.Appendf(nil, "writer %d message %d %s", w, i, pattern(100+i, byte(w)))
		if !bytes.Equal(data, want) || i != next[w] {
			t.Fatalf("writer %d: got message %d (%d bytes), want message %d intact", w, i, len(data), next[w])
		}
		next[w]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
