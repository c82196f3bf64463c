package keyless

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The harness: child processes with watched output, commands with a
// deadline, and polling with a deadline. Nothing here sleeps to wait for
// something to happen; waitFor polls a condition.

const (
	// commandTimeout bounds every command a test runs.
	commandTimeout = 2 * time.Minute

	// ciHint ends every message about a missing tool.
	ciHint = ".ci/run must install it"
)

// randomHex returns n random bytes as hex: the suffix that keeps the names
// of one run's namespaces, links, users and directories apart from any
// other run's.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cleanEnv is a minimal environment for a child process: PATH, HOME set to
// home so that no ~/.aws or other personal settings are read, plus extra.
func cleanEnv(home string, extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8"}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// result is what a finished command left.
type result struct {
	Stdout, Stderr string
	Code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// run runs a prepared command to its end (within commandTimeout) and
// returns its output and exit status. It fails the test only when the
// command cannot be run at all.
func run(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errOut bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(commandTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not finish within %s\nstderr:\n%s", strings.Join(cmd.Args, " "), commandTimeout, errOut.String())
	}
	r := result{Stdout: out.String(), Stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v\nstderr:\n%s", strings.Join(cmd.Args, " "), err, r.Stderr)
	}
	return r
}

// command prepares name args with a clean environment plus env.
func command(t *testing.T, env map[string]string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = cleanEnv(t.TempDir(), env)
	return cmd
}

// must runs a command of the machine's setup (ip, useradd, …) as root
// with the inherited environment and fails the test unless it succeeds.
func must(t *testing.T, name string, args ...string) string {
	t.Helper()
	r := run(t, exec.Command(name, args...))
	if r.Code != 0 {
		t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return r.Stdout
}

// waitFor polls cond until it holds or timeout passes. It is for
// conditions that no event announces (a state a server computes, a key
// expiring).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchedBuffer collects a child's output and wakes up whoever waits for
// a line to appear in it.
type watchedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{changed: make(chan struct{})} }

func (b *watchedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (b *watchedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// await returns the first complete line at or after offset from that
// contains substr, once it has been written, and the offset just past
// that line; ok is false when done is closed or the timeout passes first.
func (b *watchedBuffer) await(from int, substr string, done <-chan struct{}, timeout time.Duration) (line string, next int, ok bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	find := func(text string) (string, int, bool) {
		for pos := min(from, len(text)); ; {
			end := strings.IndexByte(text[pos:], '\n')
			if end < 0 { // the rest is an incomplete line
				return "", 0, false
			}
			if l := text[pos : pos+end]; strings.Contains(l, substr) {
				return l, pos + end + 1, true
			}
			pos += end + 1
		}
	}
	for {
		b.mu.Lock()
		text, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		if line, next, ok := find(text); ok {
			return line, next, true
		}
		select {
		case <-changed:
		case <-done:
			// exec.Cmd.Wait returns after copying all output.
			return find(b.String() + "\n")
		case <-timer.C:
			return "", 0, false
		}
	}
}

// Len returns how many bytes were written so far, for await's offset.
func (b *watchedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// proc is a long-running child process (server, agent, sshd).
type proc struct {
	name           string
	Stdout, Stderr *watchedBuffer
	cmd            *exec.Cmd
	exited         chan struct{} // closed once the process is reaped
	exitErr        error
	stopOnce       sync.Once
}

// startProc starts a child that dies with the test binary and is stopped
// when the test ends.
func startProc(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, Stdout: newWatchedBuffer(), Stderr: newWatchedBuffer(), exited: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.Stdout, p.Stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// await waits for a line containing substr on stderr (the logs of all
// three daemons) at or after offset from, failing the test when the
// process ends first. It returns the offset just past that line.
func (p *proc) await(t *testing.T, from int, substr string, timeout time.Duration) int {
	t.Helper()
	_, next, ok := p.Stderr.await(from, substr, p.exited, timeout)
	if !ok {
		t.Fatalf("%s did not log %q within %s (exited: %v)\nstdout:\n%s\nstderr:\n%s", p.name, substr, timeout, p.hasExited(), p.Stdout, p.Stderr)
	}
	return next
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to 20 s, then kills. It returns the exit
// error; it is safe to call more than once.
func (p *proc) stop(t *testing.T) error {
	t.Helper()
	p.stopOnce.Do(func() {
		if !p.hasExited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not exit within 20s of SIGTERM; killing it", p.name)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p.exitErr
}

// shellUnquote undoes POSIX single quoting ('…' with '\” for a quote).
func shellUnquote(v string) string {
	if !strings.HasPrefix(v, "'") {
		return v
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\'':
			in = !in
		case c == '\\' && !in && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseExports reads the `export K=V` lines of a shell snippet.
func parseExports(t *testing.T, text string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("cannot parse %q", line)
		}
		env[k] = shellUnquote(v)
	}
	return env
}
