package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
)

// The target is a plain TCP server in the private namespace: this
// program re-executed there with targetChildArg. On every connection it
// sends one greeting byte at once (the "first byte from the target" the
// open latency waits for, as sshd's banner would be), then serves
// requests of nine bytes, an operation and a big-endian byte count:
//
//	'U' n: read n bytes and drop them, then answer one byte (an upload);
//	'D' n: send n bytes (a download).
//
// An idle tunnel's connection just waits for a request.
const (
	targetChildArg = "target-child"
	targetPort     = 5201
	greeting       = 'P'
	opUpload       = 'U'
	opDownload     = 'D'
	uploadDone     = 'K'
	// chunk is what clients write at a time: under the 65,000 bytes an
	// OpenTunnel client frame may carry, so each write is one frame.
	chunk = 64000
)

// runTargetChild serves the target protocol on the address in args.
func runTargetChild(args []string) error {
	fs := benchrig.NewFlagSet(targetChildArg)
	listen := fs.String("listen", "", "host:port to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	serveUntilSignal(ln, "target", func(c net.Conn) { serveTarget(c, data) })
	return nil
}

// serveUntilSignal accepts connections on ln, serving each on a goroutine
// of its own, until SIGINT or SIGTERM.
func serveUntilSignal(ln net.Listener, name string, serve func(net.Conn)) {
	ctx, stop := benchrig.SignalContext()
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fmt.Fprintf(os.Stderr, "%s: accept: %v\n", name, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c)
	}
}

func serveTarget(c net.Conn, data []byte) {
	defer c.Close()
	if _, err := c.Write([]byte{greeting}); err != nil {
		return
	}
	var req [9]byte
	for {
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(req[1:]))
		switch req[0] {
		case opUpload:
			if _, err := io.CopyBuffer(io.Discard, io.LimitReader(c, n), make([]byte, 256<<10)); err != nil {
				return
			}
			if _, err := c.Write([]byte{uploadDone}); err != nil {
				return
			}
		case opDownload:
			for n > 0 {
				k := min(n, int64(len(data)))
				if _, err := c.Write(data[:k]); err != nil {
					return
				}
				n -= k
			}
		default:
			return
		}
	}
}

// stream is a client's byte stream to the target, whichever way it goes.
type stream interface {
	io.ReadWriter
	Close() error
}

// ready waits for the target's greeting.
func ready(s stream) error {
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return fmt.Errorf("no greeting from the target: %w", err)
	}
	if b[0] != greeting {
		return fmt.Errorf("the target greeted with %q", b[0])
	}
	return nil
}

// transfer times one upload or download of n bytes over s. budget bounds
// it: s is closed when it runs out, which fails the transfer.
func transfer(s stream, op byte, n int64, payload []byte, budget time.Duration) (time.Duration, error) {
	timer := time.AfterFunc(budget, func() { s.Close() })
	defer timer.Stop()
	var req [9]byte
	req[0] = op
	binary.BigEndian.PutUint64(req[1:], uint64(n))
	start := time.Now()
	if _, err := s.Write(req[:]); err != nil {
		return 0, err
	}
	switch op {
	case opUpload:
		for left := n; left > 0; {
			k := min(left, int64(len(payload)))
			if _, err := s.Write(payload[:k]); err != nil {
				return 0, fmt.Errorf("upload: %w", err)
			}
			left -= k
		}
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err != nil || b[0] != uploadDone {
			return 0, fmt.Errorf("upload: no acknowledgement from the target: %v", err)
		}
	case opDownload:
		got, err := io.CopyBuffer(io.Discard, io.LimitReader(s, n), make([]byte, 256<<10))
		if err != nil || got != n {
			return 0, fmt.Errorf("download: %d of %d bytes: %v", got, n, err)
		}
	}
	return time.Since(start), nil
}

// cmdStream is a child process's standard input and output: ssh -W.
type cmdStream struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  io.ReadCloser
	once sync.Once
	done chan error
}

// startCmdStream starts argv; Close ends it.
func startCmdStream(argv []string, env []string) (*cmdStream, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &cmdStream{cmd: cmd, in: in, out: out, done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		s.done <- err
	}()
	return s, nil
}

func (s *cmdStream) Read(p []byte) (int, error)  { return s.out.Read(p) }
func (s *cmdStream) Write(p []byte) (int, error) { return s.in.Write(p) }

// Close ends the process: its stdin first, then a kill if it lingers.
func (s *cmdStream) Close() error {
	var err error
	s.once.Do(func() {
		s.in.Close()
		select {
		case err = <-s.done:
		case <-time.After(2 * time.Second):
			_ = s.cmd.Process.Kill()
			err = <-s.done
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = nil // ssh -W exits 255 when its stdin closes under it
		}
	})
	return err
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 4096 - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// tlsRelayChildArg, as the first argument, makes this program the TLS
// relay: the least a TLS tunnel does, as a ceiling for the others.
const tlsRelayChildArg = "tls-relay-child"

// runTLSRelayChild accepts TLS connections (Go's crypto/tls, as the
// endpoint's) on -listen and copies each, both ways, to a new TCP
// connection to -to: no WebSocket, no authorization.
func runTLSRelayChild(args []string) error {
	fs := benchrig.NewFlagSet(tlsRelayChildArg)
	listen := fs.String("listen", "", "host:port to serve TLS on")
	to := fs.String("to", "", "host:port to relay each connection to")
	certFile := fs.String("cert", "", "certificate (PEM)")
	keyFile := fs.String("key", "", "private key (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", *listen, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return err
	}
	serveUntilSignal(ln, "tls relay", func(c net.Conn) { relayTLS(c, *to) })
	return nil
}

func relayTLS(c net.Conn, to string) {
	defer c.Close()
	t, err := net.Dial("tcp", to)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls relay: dial:", err)
		return
	}
	defer t.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(c, t)
		c.(*tls.Conn).CloseWrite()
		close(done)
	}()
	io.Copy(t, c)
	t.(*net.TCPConn).CloseWrite()
	<-done
}
