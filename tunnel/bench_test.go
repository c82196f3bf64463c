package tunnel_test

import (
	"context"
	"io"
	"testing"

	"github.com/postern-dev/postern/tunnel"
)

// BenchmarkPipe measures bulk throughput on loopback through a tunnel (a
// real WebSocket, Pipe, a real TCP connection), each way, against the same
// transfer over one direct TCP connection.
func BenchmarkPipe(b *testing.B) {
	const chunk = 32 << 10
	b.Run("direct-tcp", func(b *testing.B) {
		conn, target := tcpPair(b)
		benchTransfer(b, chunk, func(p []byte) error { _, err := conn.Write(p); return err }, target)
	})
	for _, size := range []int{chunk, tunnel.DefaultMaxFrame} {
		name := "websocket-upload-32KiB"
		if size != chunk {
			name = "websocket-upload-65000B"
		}
		b.Run(name, func(b *testing.B) {
			s := startSession(b, transports[1], context.Background(), tunnel.Limits{}, clientOptions{})
			benchTransfer(b, size, func(p []byte) error {
				return s.client.Write(context.Background(), tunnel.MessageBinary, p)
			}, s.target)
			s.end(b)
		})
	}
	b.Run("websocket-download-32KiB", func(b *testing.B) {
		s := startSession(b, transports[1], context.Background(), tunnel.Limits{}, clientOptions{})
		benchTransfer(b, chunk, func(p []byte) error { _, err := s.target.Write(p); return err }, messageReader{s.client})
		s.end(b)
	})
}

// benchTransfer writes b.N chunks with write while reading them from r.
func benchTransfer(b *testing.B, chunk int, write func([]byte) error, r io.Reader) {
	b.ReportAllocs()
	b.SetBytes(int64(chunk))
	total := int64(b.N) * int64(chunk)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var n int64
		for n < total {
			m, err := r.Read(buf)
			n += int64(m)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	p := make([]byte, chunk)
	b.ResetTimer()
	for range b.N {
		if err := write(p); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

// end closes the tunnel from the target's side and waits for Pipe.
func (s *session) end(b *testing.B) {
	closed := make(chan error, 1)
	go func() { _, err := readClose(s.client); closed <- err }()
	s.target.Close()
	s.wait(b)
	if err := <-closed; err != nil {
		b.Error(err)
	}
}

// messageReader reads the payload of a client's binary messages as a stream.
type messageReader struct{ c tunnel.MessageConn }

func (m messageReader) Read(p []byte) (int, error) {
	_, data, err := m.c.Read(context.Background())
	if len(data) > len(p) {
		return 0, io.ErrShortBuffer
	}
	return copy(p, data), err
}
