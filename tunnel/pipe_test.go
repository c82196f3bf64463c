package tunnel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/tunnel"
)

func TestPipeEcho(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		go func() {
			// Plain reads and writes: io.Copy between sockets would splice
			// through a pooled pipe that outlives the test.
			io.Copy(struct{ io.Writer }{s.target}, struct{ io.Reader }{s.target})
			s.target.Close()
		}()
		ctx := context.Background()
		var sent int64
		for _, msg := range []string{"SSH-2.0-OpenSSH_9.6\r\n", "", "x", strings.Repeat("y", 1000)} {
			if err := s.client.Write(ctx, tunnel.MessageBinary, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			sent += int64(len(msg))
			var got []byte
			for len(got) < len(msg) {
				typ, data, err := s.client.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if typ != tunnel.MessageBinary {
					t.Fatalf("client got a %v message", typ)
				}
				got = append(got, data...)
			}
			if string(got) != msg {
				t.Fatalf("echo of %d bytes came back as %d", len(msg), len(got))
			}
		}
		if err := s.client.Close(tunnel.StatusNormalClosure, "done"); err != nil {
			t.Fatal(err)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseClientClosed, tunnel.StatusNormalClosure, "done")
		if r.BytesFromClient != sent || r.BytesToClient != sent {
			t.Errorf("bytes %d from and %d to the client, want %d each", r.BytesFromClient, r.BytesToClient, sent)
		}
	})
}

// TestPipeLargeTransfer sends 64 MiB each way at once and compares
// checksums.
func TestPipeLargeTransfer(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()

		wantUp, wantDown := sha256.New(), sha256.New()
		upSrc := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), wantUp)
		downSrc := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{2}), size), wantDown)

		var wg sync.WaitGroup
		var clientErr, targetErr error
		wg.Go(func() { // client → target, in frames of the largest size allowed
			buf := make([]byte, tunnel.DefaultMaxFrame)
			for {
				n, err := io.ReadFull(upSrc, buf)
				if n > 0 {
					if werr := s.client.Write(ctx, tunnel.MessageBinary, buf[:n]); werr != nil {
						clientErr = werr
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
		gotUp := sha256.New()
		wg.Go(func() { // target: read the client's stream, send its own, close
			var sendErr error
			sent := make(chan struct{})
			go func() { _, sendErr = io.Copy(s.target, downSrc); close(sent) }()
			if n, err := io.CopyN(gotUp, s.target, size); err != nil {
				targetErr = err
				t.Errorf("target read %d bytes: %v", n, err)
			}
			<-sent
			if sendErr != nil {
				targetErr = sendErr
			}
			s.target.Close()
		})
		gotDown := sha256.New()
		var received int64
		var end *tunnel.CloseError
		for {
			typ, data, err := s.client.Read(ctx)
			if err != nil {
				if !errors.As(err, &end) {
					t.Fatalf("client read after %d bytes: %v", received, err)
				}
				break
			}
			if typ != tunnel.MessageBinary || len(data) > 32<<10 {
				t.Fatalf("client got a %v message of %d bytes", typ, len(data))
			}
			received += int64(len(data))
			gotDown.Write(data)
		}
		wg.Wait()
		if clientErr != nil || targetErr != nil {
			t.Fatalf("client: %v; target: %v", clientErr, targetErr)
		}
		if end.Code != tunnel.StatusNormalClosure || end.Reason != "target closed the connection" {
			t.Errorf("client saw close %d %q", end.Code, end.Reason)
		}
		if !bytes.Equal(gotUp.Sum(nil), wantUp.Sum(nil)) {
			t.Error("the target received other bytes than the client sent")
		}
		if received != size || !bytes.Equal(gotDown.Sum(nil), wantDown.Sum(nil)) {
			t.Errorf("the client received %d bytes, other than the target sent", received)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseTargetClosed, tunnel.StatusNormalClosure, "target closed the connection")
		if r.BytesFromClient != size || r.BytesToClient != size {
			t.Errorf("result counts %d up and %d down, want %d each", r.BytesFromClient, r.BytesToClient, size)
		}
	})
}

func TestPipeRejectsTextFrame(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		ctx := context.Background()
		if err := s.client.Write(ctx, tunnel.MessageBinary, []byte("before")); err != nil {
			t.Fatal(err)
		}
		if err := s.client.Write(ctx, tunnel.MessageText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		ce := readUntilClose(t, s.client)
		const reason = "text frames are not supported: OpenTunnel carries binary frames only"
		if ce.Code != tunnel.StatusUnsupportedData || ce.Reason != reason {
			t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
		}
		got, _ := io.ReadAll(s.target)
		if string(got) != "before" {
			t.Errorf("target got %q, want only what came before the text frame", got)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseProtocol, tunnel.StatusUnsupportedData, reason)
		if r.BytesFromClient != 6 {
			t.Errorf("BytesFromClient = %d", r.BytesFromClient)
		}
	})
}

func TestPipeRejectsOversizedFrame(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		ctx := context.Background()
		// The largest frame allowed goes through.
		if err := s.client.Write(ctx, tunnel.MessageBinary, make([]byte, tunnel.DefaultMaxFrame)); err != nil {
			t.Fatal(err)
		}
		if n, err := io.CopyN(io.Discard, s.target, tunnel.DefaultMaxFrame); err != nil {
			t.Fatalf("target read %d bytes: %v", n, err)
		}
		if err := s.client.Write(ctx, tunnel.MessageBinary, make([]byte, tunnel.DefaultMaxFrame+1)); err != nil {
			t.Fatal(err)
		}
		ce := readUntilClose(t, s.client)
		const reason = "frame exceeds the maximum size of 65000 bytes"
		if ce.Code != tunnel.StatusMessageTooBig || ce.Reason != reason {
			t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
		}
		if n, _ := io.Copy(io.Discard, s.target); n != 0 {
			t.Errorf("target got %d bytes of the oversized frame", n)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseProtocol, tunnel.StatusMessageTooBig, reason)
	})
}

func TestPipeMaxDuration(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{MaxDuration: 300 * time.Millisecond}, clientOptions{})
		ce := readUntilClose(t, s.client)
		const reason = "maximum tunnel duration of 300ms reached"
		if ce.Code != tunnel.StatusPolicyViolation || ce.Reason != reason {
			t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseMaxDuration, tunnel.StatusPolicyViolation, reason)
	})
}

func TestPipeTargetCloses(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		if _, err := s.target.Write([]byte("goodbye")); err != nil {
			t.Fatal(err)
		}
		s.target.Close()
		var got []byte
		var ce *tunnel.CloseError
		for {
			_, data, err := s.client.Read(context.Background())
			if err != nil {
				if !errors.As(err, &ce) {
					t.Fatal(err)
				}
				break
			}
			got = append(got, data...)
		}
		if string(got) != "goodbye" || ce.Code != tunnel.StatusNormalClosure || ce.Reason != "target closed the connection" {
			t.Errorf("client got %q then close %d %q", got, ce.Code, ce.Reason)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseTargetClosed, tunnel.StatusNormalClosure, "target closed the connection")
		if r.BytesToClient != 7 || r.Err != nil {
			t.Errorf("BytesToClient = %d, Err = %v", r.BytesToClient, r.Err)
		}
	})
}

func TestPipeTargetResets(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		s.target.SetLinger(0) // close with an RST
		s.target.Close()
		ce := readUntilClose(t, s.client)
		if ce.Code != tunnel.StatusInternalError || ce.Reason != "the target reset the connection" {
			t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseTargetFailed, tunnel.StatusInternalError, "the target reset the connection")
		if r.Err == nil {
			t.Error("no underlying error")
		}
	})
}

// TestPipeClientCloses checks the half-close: the target gets everything
// the client sent, then end of stream, and may still answer (into the void)
// before it closes.
func TestPipeClientCloses(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		ctx := context.Background()
		for _, part := range []string{"exit", "\n"} {
			if err := s.client.Write(ctx, tunnel.MessageBinary, []byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		closed := make(chan error, 1)
		go func() { closed <- s.client.Close(tunnel.StatusNormalClosure, "") }()
		got, err := io.ReadAll(s.target) // to end of stream
		if err != nil || string(got) != "exit\n" {
			t.Fatalf("target read %q, %v", got, err)
		}
		if _, err := s.target.Write([]byte("logout\n")); err != nil {
			t.Fatal(err)
		}
		s.target.Close()
		if err := <-closed; err != nil {
			t.Errorf("client Close = %v", err)
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseClientClosed, tunnel.StatusNormalClosure, "")
		if r.BytesFromClient != 5 || r.BytesToClient != 0 {
			t.Errorf("bytes %d from and %d to the client", r.BytesFromClient, r.BytesToClient)
		}
	})
}

// TestPipeDrainTimeout: a target that never closes after the client left
// does not hold the tunnel open.
func TestPipeDrainTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{DrainTimeout: 100 * time.Millisecond}, clientOptions{})
		if err := s.client.Close(tunnel.StatusGoingAway, "laptop sleeping"); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(s.target); err != nil || len(got) != 0 {
			t.Fatalf("target read %q, %v", got, err)
		}
		r := s.wait(t) // the target is still open
		wantResult(t, r, tunnel.CauseClientClosed, tunnel.StatusGoingAway, "laptop sleeping")
	})
}

func TestPipeCanceled(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		t.Run("with a close frame", func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			s := startSession(t, tr, ctx, tunnel.Limits{}, clientOptions{})
			cancel(&tunnel.CloseError{Code: tunnel.StatusGoingAway, Reason: "endpoint eice-0123456789abcdef0 is being deleted"})
			ce := readUntilClose(t, s.client)
			if ce.Code != tunnel.StatusGoingAway || ce.Reason != "endpoint eice-0123456789abcdef0 is being deleted" {
				t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
			}
			r := s.wait(t)
			wantResult(t, r, tunnel.CauseCanceled, tunnel.StatusGoingAway, "endpoint eice-0123456789abcdef0 is being deleted")
			if r.Err != nil {
				t.Errorf("Err = %v for a deliberate close", r.Err)
			}
		})
		t.Run("plain", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			s := startSession(t, tr, ctx, tunnel.Limits{}, clientOptions{})
			cancel()
			ce := readUntilClose(t, s.client)
			if ce.Code != tunnel.StatusGoingAway {
				t.Errorf("client saw close %d %q", ce.Code, ce.Reason)
			}
			r := s.wait(t)
			wantResult(t, r, tunnel.CauseCanceled, tunnel.StatusGoingAway, "the endpoint closed the tunnel")
			if !errors.Is(r.Err, context.Canceled) {
				t.Errorf("Err = %v", r.Err)
			}
		})
	})
}

// TestPipeClientVanishes drops the client's connection in the middle of a
// transfer both ways: Pipe must notice, close the target and leave nothing
// behind.
func TestPipeClientVanishes(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{}, clientOptions{})
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { // the target streams until the tunnel is gone
			chunk := make([]byte, 16<<10)
			for {
				if _, err := s.target.Write(chunk); err != nil {
					return
				}
			}
		})
		wg.Go(func() { io.Copy(io.Discard, s.target) })
		ctx := context.Background()
		for range 8 { // mid-stream: data is flowing both ways
			if err := s.client.Write(ctx, tunnel.MessageBinary, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.client.Read(ctx); err != nil {
				t.Fatal(err)
			}
		}
		s.vanish()
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseClientLost, tunnel.StatusAbnormalClosure, "client connection lost")
		if r.Err == nil {
			t.Error("no underlying error")
		}
		if r.BytesFromClient > 8000 {
			t.Errorf("BytesFromClient = %d", r.BytesFromClient)
		}
		s.target.Close()
	})
}

// TestPipeKeepalive: an idle tunnel is pinged, answers, and lives on.
func TestPipeKeepalive(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pinged := make(chan struct{}, 100)
		s := startSession(t, tr, context.Background(), tunnel.Limits{PingInterval: 20 * time.Millisecond},
			clientOptions{onPing: func() {
				select {
				case pinged <- struct{}{}:
				default:
				}
			}})
		// Pings are answered by a reading client.
		msgs := make(chan []byte, 1)
		go func() {
			for {
				_, data, err := s.client.Read(context.Background())
				if err != nil {
					close(msgs)
					return
				}
				msgs <- bytes.Clone(data)
			}
		}()
		for range 5 {
			<-pinged
		}
		if _, err := s.target.Write([]byte("still there?")); err != nil {
			t.Fatal(err)
		}
		if got := <-msgs; string(got) != "still there?" {
			t.Fatalf("client got %q", got)
		}
		s.target.Close()
		for range msgs {
		}
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseTargetClosed, tunnel.StatusNormalClosure, "target closed the connection")
	})
}

// TestPipeKeepaliveTimeout: a client that answers nothing is given up on.
func TestPipeKeepaliveTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		s := startSession(t, tr, context.Background(), tunnel.Limits{PingInterval: 50 * time.Millisecond}, clientOptions{})
		// The client never reads, so it never answers a ping.
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseKeepalive, tunnel.StatusAbnormalClosure, "client did not answer a keepalive ping within 50ms")
		if got, err := io.ReadAll(s.target); err != nil || len(got) != 0 {
			t.Errorf("target read %q, %v; want end of stream", got, err)
		}
	})
}

// TestPipeSlowTargetKeepsClient: while Pipe is stuck writing to a target
// that does not read, it cannot read the client's pongs either. Failed
// pings must not then be taken for a dead client.
func TestPipeSlowTargetKeepsClient(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		pings := make(chan error, 100)
		s := startSession(t, tr, context.Background(), tunnel.Limits{PingInterval: 50 * time.Millisecond},
			clientOptions{
				pings: pings,
				// Small buffers, so that the target's not reading soon
				// blocks Pipe's writes to it.
				tcp: func(endpoint, target *net.TCPConn) {
					endpoint.SetWriteBuffer(16 << 10)
					target.SetReadBuffer(16 << 10)
				},
			})
		ctx := context.Background()
		const total = 4 << 20 // far more than the buffers hold
		sent := make(chan error, 1)
		go func() {
			frame := make([]byte, tunnel.DefaultMaxFrame)
			var err error
			for n := 0; n < total && err == nil; n += len(frame) {
				err = s.client.Write(ctx, tunnel.MessageBinary, frame[:min(len(frame), total-n)])
			}
			sent <- err
		}()
		for failed := 0; failed < 3; {
			select {
			case err := <-pings:
				if err != nil {
					failed++
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no failed pings while the target was not reading")
			}
		}
		if n, err := io.CopyN(io.Discard, s.target, total); err != nil {
			t.Fatalf("target read %d of %d bytes: %v", n, total, err)
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() { _, err := readClose(s.client); closed <- err }()
		s.target.Close()
		r := s.wait(t)
		wantResult(t, r, tunnel.CauseTargetClosed, tunnel.StatusNormalClosure, "target closed the connection")
		if r.BytesFromClient != total {
			t.Errorf("BytesFromClient = %d", r.BytesFromClient)
		}
		if err := <-closed; err != nil {
			t.Errorf("client: %v, want a close frame", err)
		}
	})
}

func TestPipeLongReasonIsTrimmed(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		ctx, cancel := context.WithCancelCause(context.Background())
		s := startSession(t, tr, ctx, tunnel.Limits{}, clientOptions{})
		cancel(&tunnel.CloseError{Code: 4000, Reason: strings.Repeat("é", 100)}) // 200 bytes
		ce := readUntilClose(t, s.client)
		if ce.Code != 4000 || ce.Reason != strings.Repeat("é", 61) {
			t.Errorf("client saw close %d %q (%d bytes)", ce.Code, ce.Reason, len(ce.Reason))
		}
		s.wait(t)
	})
}
