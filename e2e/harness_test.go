package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/postern-dev/postern/store/postgres/pgtest"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The harness: TestMain builds the binary once; startServer runs `postern
// server` as a child process and hands back what a client needs to reach
// it. calls_test.go makes SDK and raw SigV4-signed calls, trail_test.go
// reads the audit trail, and secrets_test.go keeps the registry of secrets
// and error messages for the leak checks.

var (
	// posternBin is the binary TestMain built.
	posternBin string
	// repoRoot is the module root (the parent of this directory).
	repoRoot string
)

const (
	region = "us-east-1"

	ec2Version = "2016-11-15"
	iamVersion = "2010-05-08"

	cloudTrailTarget = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"
	posternTarget    = "Postern_20261101"

	// commandTimeout bounds every client command a test runs.
	commandTimeout = 2 * time.Minute

	// ciHint ends every message about a missing tool.
	ciHint = ".ci/run should install it"
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot find the module root next to the e2e directory: %v\n", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "postern-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go tool is not on PATH:", err)
		return 1
	}
	posternBin = filepath.Join(dir, "postern")
	// -trimpath as in the Makefile, so that the quickstart's `make build`
	// finds everything in the build cache.
	build := exec.Command(goTool, "build", "-trimpath", "-o", posternBin, "./cmd/postern")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/postern: %v\n%s", err, out)
		return 1
	}
	// pgtest stops a PostgreSQL cluster it had to start.
	return pgtest.Main(m)
}

// cleanEnv is a minimal environment for a child process: PATH, and HOME
// set to home so that no ~/.aws or other personal settings are read.
func cleanEnv(home string, extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
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

// await returns the first complete line containing substr once it has
// been written, or false when done is closed or the timeout passes first.
func (b *watchedBuffer) await(substr string, done <-chan struct{}, timeout time.Duration) (string, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		b.mu.Lock()
		text, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		lines := strings.Split(text, "\n")
		for _, line := range lines[:len(lines)-1] { // the last one is incomplete
			if strings.Contains(line, substr) {
				return line, true
			}
		}
		select {
		case <-changed:
		case <-done:
			// The writer is gone; what it wrote last is in b already
			// (exec.Cmd.Wait returns after copying all output).
			for _, line := range strings.Split(b.String(), "\n") {
				if strings.Contains(line, substr) {
					return line, true
				}
			}
			return "", false
		case <-timer.C:
			return "", false
		}
	}
}

// server is a running `postern server` child process.
type server struct {
	URL     string
	DataDir string
	// AdminKeyID and AdminSecret come from the data dir's admin.credentials.
	AdminKeyID, AdminSecret string
	// Env holds the variables `postern env --data-dir DIR` exports.
	Env map[string]string
	// Log is the server's stderr (its structured log); Stdout its
	// messages for the operator.
	Log, Stdout *watchedBuffer

	cmd        *exec.Cmd
	exited     chan struct{} // closed when the process has been reaped
	exitErr    error
	httpClient *http.Client
	home       string

	stopOnce  sync.Once
	stopCheck error // the outcome of Stop, reported once
}

// defaultServerArgs are the flags every test server runs with.
var defaultServerArgs = []string{"--listen", "127.0.0.1:0", "--digest-interval", "1s", "--shutdown-grace", "5s"}

// startServer runs `postern server` on a fresh data directory, waits until
// it says it is listening, and stops it (asserting a clean exit) when the
// test ends.
func startServer(t *testing.T, extraArgs ...string) *server {
	t.Helper()
	return startServerIn(t, t.TempDir(), extraArgs...)
}

// startServerIn is startServer on a given (possibly used) data directory.
func startServerIn(t *testing.T, dataDir string, extraArgs ...string) *server {
	t.Helper()
	s := launchServer(t, dataDir, extraArgs...)
	s.awaitListening(t, 60*time.Second)
	return s
}

// launchServer starts a server process without waiting for it to listen.
func launchServer(t *testing.T, dataDir string, extraArgs ...string) *server {
	t.Helper()
	s := &server{
		DataDir: dataDir,
		Log:     newWatchedBuffer(),
		Stdout:  newWatchedBuffer(),
		exited:  make(chan struct{}),
		home:    t.TempDir(),
	}
	args := append([]string{"server", "--data-dir", dataDir}, defaultServerArgs...)
	s.cmd = exec.Command(posternBin, append(args, extraArgs...)...)
	s.cmd.Env = cleanEnv(s.home, nil)
	s.cmd.Stdout = s.Stdout
	s.cmd.Stderr = s.Log
	// Should the test binary die, its servers die with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start postern server: %v", err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// awaitListening waits until the server says it listens, then reads its
// admin credentials and how clients reach it.
func (s *server) awaitListening(t *testing.T, timeout time.Duration) {
	t.Helper()
	const ready = "Postern server listening on "
	line, ok := s.Stdout.await(ready, s.exited, timeout)
	if !ok {
		t.Fatalf("postern server did not report %q\nstdout:\n%s\nlog:\n%s", ready, s.Stdout, s.Log)
	}
	rest := line[strings.Index(line, ready)+len(ready):]
	s.URL, _, _ = strings.Cut(rest, " ")
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("server URL %q from %q is not https://127.0.0.1:PORT", s.URL, line)
	}

	dataDir := s.DataDir
	s.AdminKeyID, s.AdminSecret = readCredentials(t, filepath.Join(dataDir, "admin.credentials"))
	noteSecret(s.AdminSecret, "admin secret of "+dataDir)
	s.httpClient = newHTTPClient(t, filepath.Join(dataDir, "ca.pem"))
	s.Env = s.posternEnv(t)
	if s.Env["AWS_ENDPOINT_URL"] != s.URL {
		t.Fatalf("postern env says AWS_ENDPOINT_URL=%q, the server listens on %q", s.Env["AWS_ENDPOINT_URL"], s.URL)
	}
}

// Stop sends SIGTERM (unless the process has ended already), waits for
// the exit, and fails the test unless the exit status is 0. It then checks
// the complete log for secrets. It is safe to call more than once.
func (s *server) Stop(t *testing.T) {
	t.Helper()
	first := false
	s.stopOnce.Do(func() {
		first = true
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-s.exited:
			if s.exitErr != nil {
				s.stopCheck = fmt.Errorf("postern server exited with %v; want exit status 0", s.exitErr)
			}
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.stopCheck = errors.New("postern server did not exit within 30s of SIGTERM")
		}
	})
	if first {
		if s.stopCheck != nil {
			t.Errorf("%v\nlog:\n%s", s.stopCheck, s.Log)
		}
		assertNoSecretsIn(t, "the log of the server on "+s.DataDir, s.Log.String()+s.Stdout.String())
	}
}

// terminate sends SIGTERM without waiting.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// readCredentials reads the [postern-admin] profile of a shared
// credentials file.
func readCredentials(t *testing.T, path string) (id, secret string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read admin credentials: %v", err)
	}
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in = line == "[postern-admin]"
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !in || !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(id, "AKIA") || len(secret) != 40 {
		t.Fatalf("%s: no [postern-admin] profile with an AKIA… id and a 40-character secret", path)
	}
	return id, secret
}

// postern runs the postern binary with a clean environment plus env and
// returns its stdout, stderr and exit status.
func postern(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return posternIn(t, env, "", args...)
}

// posternIn is postern with stdin ("": none).
func posternIn(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, posternBin, args...)
	cmd.Env = cleanEnv(t.TempDir(), env)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run postern %s: %v", strings.Join(args, " "), err)
	}
	if code != 0 {
		noteError(errOut.String())
	}
	return out.String(), errOut.String(), code
}

// postern runs a postern client command against s as its admin.
func (s *server) postern(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return postern(t, s.Env, args...)
}

// posternEnv runs `postern env --data-dir DIR`, parses its exports and
// checks that they hold what the issue promises.
func (s *server) posternEnv(t *testing.T) map[string]string {
	t.Helper()
	out, errOut, code := postern(t, nil, "env", "--data-dir", s.DataDir)
	if code != 0 {
		t.Fatalf("postern env: exit %d: %s", code, errOut)
	}
	env := parseExports(t, out)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"} {
		if env[k] == "" {
			t.Fatalf("postern env does not export %s; got %v", k, keysOf(env))
		}
	}
	if env["AWS_ACCESS_KEY_ID"] != s.AdminKeyID || env["AWS_SECRET_ACCESS_KEY"] != s.AdminSecret {
		t.Fatalf("postern env exports other credentials than admin.credentials holds")
	}
	if want := filepath.Join(s.DataDir, "ca.pem"); env["AWS_CA_BUNDLE"] != want {
		t.Errorf("postern env: AWS_CA_BUNDLE=%q, want %q", env["AWS_CA_BUNDLE"], want)
	}
	return env
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

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
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

// waitFor polls cond until it holds or the deadline passes. It is for
// conditions that no event announces (a token bucket refilling, a port
// closing).
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
