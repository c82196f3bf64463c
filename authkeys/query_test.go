package authkeys

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postern-dev/postern/keyrecord"
)

// fakeAgent listens on a unix socket in a new directory and runs serve on
// each connection.
func fakeAgent(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return path
}

func TestQuery(t *testing.T) {
	want := []keyrecord.Signed{{Payload: []byte(`{"osUser":"alice"}`), Signature: []byte("sig")}}
	path := fakeAgent(t, func(c net.Conn) {
		var req Request
		if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil || req.User != "alice" {
			t.Errorf("the agent got %+v (%v), want the user alice", req, err)
			return
		}
		_ = json.NewEncoder(c).Encode(Response{Records: want})
	})
	got, err := Query(path, "alice", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Payload) != string(want[0].Payload) || string(got[0].Signature) != "sig" {
		t.Errorf("Query = %+v, want %+v", got, want)
	}
}

// An agent that accepts and never answers costs the helper its timeout,
// not a hung login.
func TestQueryStalledAgent(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	path := fakeAgent(t, func(net.Conn) { <-release })
	if recs, err := Query(path, "alice", 200*time.Millisecond); err == nil {
		t.Fatalf("Query of a silent agent = %v, nil; want an error", recs)
	}
	if _, err := Query(filepath.Join(t.TempDir(), "none.sock"), "alice", time.Second); err == nil {
		t.Fatal("Query of a missing socket succeeded")
	}
}

// The accepted-key line reaches syslog as one authpriv.info datagram in
// the form local daemons read, and a line break in a logged value cannot
// start a forged line.
func TestSyslogLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	logf, closeLog := syslogTo([]string{filepath.Join(dir, "missing"), path}, SyslogTag)
	logf("accepted key %s for %s", "SHA256:abc", "alice\nJan  1 00:00:00 host sshd[1]: forged")
	closeLog()
	_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^<86>[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} postern-authorized-keys\[` +
		strconv.Itoa(os.Getpid()) + `\]: accepted key SHA256:abc for alice Jan  1 00:00:00 host sshd\[1\]: forged\n$`)
	if !want.Match(buf[:n]) {
		t.Errorf("syslog got %q", buf[:n])
	}

	// A daemon that takes streams only (syslog-ng may) gets the lines
	// too, each ended by a line break.
	streamPath := filepath.Join(dir, "stream")
	sl, err := net.Listen("unix", streamPath)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	logf, closeLog = syslogTo([]string{streamPath}, SyslogTag)
	logf("first %d", 1)
	logf("second %d", 2)
	closeLog()
	sc, err := sl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, _ := io.ReadAll(sc)
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "<86>") || !strings.HasSuffix(lines[0], ": first 1") || !strings.HasSuffix(lines[1], ": second 2") {
		t.Errorf("stream syslog got %q", all)
	}

	// No syslog daemon: logging does nothing, and does not fail.
	logf, closeLog = syslogTo([]string{filepath.Join(dir, "missing")}, SyslogTag)
	logf("nobody hears %s", "this")
	closeLog()
}

// A connect to an agent whose backlog is full waits at most until the
// deadline, like the reads and writes after it.
func TestQueryFullBacklog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 0 holds one pending connection; this listener never
	// accepts, so the ones after it wait.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	var held []*unixConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; ; i++ {
		c, err := dialUnix(syscall.SOCK_STREAM, path, time.Now().Add(200*time.Millisecond))
		if err != nil {
			if !errors.Is(err, errDeadline) {
				t.Fatalf("connect %d: %v, want a timeout", i, err)
			}
			break
		}
		if i == 10 {
			t.Fatal("ten connects went through to a listener that accepts nothing")
		}
		held = append(held, c)
	}
	if _, err := Query(path, "alice", 200*time.Millisecond); err == nil {
		t.Fatal("Query through a full backlog succeeded")
	}
}
