package devsshd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fakeHelper stands in for `postern authorized-keys`: it records its
// arguments in calls, prints the file keys, and exits with the number in
// status (0 if absent).
const fakeHelper = `#!/bin/sh
dir=$(dirname "$0")
echo "$*" >> "$dir/calls"
cat "$dir/keys" 2>/dev/null
[ -f "$dir/status" ] && exit "$(cat "$dir/status")"
exit 0
`

type fixture struct {
	srv        *Server
	addr       string
	port       string
	dir        string // the fake helper's
	helperCfg  string
	keyFile    string
	signer     ssh.Signer
	knownHosts string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, helperCfg: filepath.Join(dir, "helper.json")}
	helper := filepath.Join(dir, "helper")
	if err := os.WriteFile(helper, []byte(fakeHelper), 0o755); err != nil {
		t.Fatal(err)
	}
	// /bin/sh, not the login shell: a user's rc files may print or be slow.
	srv, err := New(Config{HostKeyDir: filepath.Join(dir, "host"), Helper: helper, HelperConfig: f.helperCfg, Shell: "/bin/sh",
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	_, f.port, _ = net.SplitHostPort(f.addr)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		checkNoLeaks(t)
	})

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.keyFile = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(f.keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	f.signer, _ = ssh.NewSignerFromKey(priv)
	// The client pins the key the server wrote to disk, as `postern ssh`
	// pins what the agent reports from that file.
	pub, err := os.ReadFile(filepath.Join(dir, "host", HostKeyFile+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	f.knownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(f.knownHosts, append([]byte("devsshd "), pub...), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// checkNoLeaks fails if a goroutine of this package outlived the server.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		leaked := false
		for g := range strings.SplitSeq(stacks, "\n\n") {
			if strings.Contains(g, "devsshd.(*") && !strings.Contains(g, "devsshd.checkNoLeaks") {
				leaked = true
			}
		}
		if !leaked {
			return
		}

	}
	t.Errorf("goroutines outlived the server:\n%s", stacks)
}

// line is an authorized_keys line for key with an expiry-time.
func line(key ssh.PublicKey, expiry time.Time) string {
	return `expiry-time="` + expiry.UTC().Format("20060102150405") + `Z" ` + string(ssh.MarshalAuthorizedKey(key))
}

func (f *fixture) helperPrints(t *testing.T, lines ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "keys"), []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) helperCalls(t *testing.T) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(f.dir, "calls"))
	return string(b)
}

type result struct {
	stdout, stderr string
	code           int
}

// ssh runs the real OpenSSH client against the server: ssh OPTS HOST
// [COMMAND].
func (f *fixture) ssh(t *testing.T, user, stdin string, opts []string, command ...string) result {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("OpenSSH's ssh client is not installed (.ci/run installs openssh-client)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", f.keyFile,
		"-o", "UserKnownHostsFile=" + f.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias=devsshd", "-o", "LogLevel=ERROR",
		"-p", f.port, "-l", user}
	argv = append(argv, opts...)
	argv = append(argv, "127.0.0.1")
	argv = append(argv, command...)
	cmd := exec.CommandContext(ctx, "ssh", argv...)
	cmd.Env = append(os.Environ(), "TERM=xterm-test")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ssh: %v", err)
	}
	return result{out.String(), errOut.String(), cmd.ProcessState.ExitCode()}
}

// dial logs in with the Go client, for what OpenSSH cannot be driven to
// do from a test (window changes, closing a channel mid-command).
func (f *fixture) dial(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", f.addr, &ssh.ClientConfig{User: f.srv.User(), Auth: []ssh.AuthMethod{ssh.PublicKeys(f.signer)},
		HostKeyCallback: ssh.FixedHostKey(f.srv.HostKey()), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestExecPipesAndExitStatus(t *testing.T) {
	f := newFixture(t)
	f.helperPrints(t, line(f.signer.PublicKey(), time.Now().Add(time.Minute)))
	r := f.ssh(t, f.srv.User(), "from stdin\n", nil, `echo out; echo err >&2; cat; echo "user=$USER"; exit 7`)
	if r.code != 7 {
		t.Errorf("exit code %d, want 7 (stderr %q)", r.code, r.stderr)
	}
	if want := "out\nfrom stdin\nuser=" + f.srv.User() + "\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if r.stderr != "err\n" {
		t.Errorf("stderr %q, want %q", r.stderr, "err\n")
	}
	want := "authorized-keys --config " + f.helperCfg + " " + f.srv.User() + " " + ssh.FingerprintSHA256(f.signer.PublicKey())
	if calls := f.helperCalls(t); !strings.Contains(calls, want) {
		t.Errorf("helper calls %q, want %q", calls, want)
	}
}

func TestPTYSession(t *testing.T) {
	f := newFixture(t)
	f.helperPrints(t, line(f.signer.PublicKey(), time.Now().Add(time.Minute)))
	r := f.ssh(t, f.srv.User(), "", []string{"-tt"}, `tty; echo "term=$TERM"; exit 3`)
	if r.code != 3 {
		t.Errorf("exit code %d, want 3 (stderr %q)", r.code, r.stderr)
	}
	if !regexp.MustCompile(`^/dev/pts/\d+\r\nterm=xterm-test\r\n$`).MatchString(r.stdout) {
		t.Errorf("stdout %q, want a /dev/pts/N line and the client's TERM", r.stdout)
	}
	// No command: a login shell on the terminal, fed what is typed.
	r = f.ssh(t, f.srv.User(), "echo \"login=$0\"; tty\nexit 5\n", []string{"-tt"})
	if r.code != 5 {
		t.Errorf("shell: exit code %d, want 5 (stderr %q)", r.code, r.stderr)
	}
	if !regexp.MustCompile(`login=-sh\r\n/dev/pts/\d+\r\n`).MatchString(r.stdout) {
		t.Errorf("shell: stdout %q, want a login shell on /dev/pts/N", r.stdout)
	}
}

func TestShellWithoutTerminal(t *testing.T) {
	f := newFixture(t)
	f.helperPrints(t, line(f.signer.PublicKey(), time.Now().Add(time.Minute)))
	r := f.ssh(t, f.srv.User(), "echo \"login=$0\"; tty\nexit 4\n", []string{"-T"})
	if r.code != 4 || r.stdout != "login=-sh\nnot a tty\n" {
		t.Errorf("got %+v, want a login shell without a terminal, exit 4", r)
	}
}

func TestLoginShellRefusingLogins(t *testing.T) {
	if got := loginShell("no such uid"); got != "/bin/sh" {
		t.Errorf("unknown uid: %q, want /bin/sh", got)
	}
}

func TestWindowChange(t *testing.T) {
	f := newFixture(t)
	f.helperPrints(t, line(f.signer.PublicKey(), time.Now().Add(time.Minute)))
	s, err := f.dial(t).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	if err := s.Start(`stty size; read _; stty size`); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(stdout)
	if l, _ := rd.ReadString('\n'); l != "24 80\r\n" {
		t.Errorf("first size %q, want 24 80", l)
	}
	if err := s.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte("\n"))
	rd.ReadString('\n') // the echoed newline
	if l, _ := rd.ReadString('\n'); l != "50 132\r\n" {
		t.Errorf("after window-change %q, want 50 132", l)
	}
	if err := s.Wait(); err != nil {
		t.Errorf("session: %v", err)
	}
}

func TestClosingTheChannelKillsTheProcess(t *testing.T) {
	for _, tty := range []bool{false, true} {
		t.Run("tty="+strconv.FormatBool(tty), func(t *testing.T) {
			f := newFixture(t)
			f.helperPrints(t, line(f.signer.PublicKey(), time.Now().Add(time.Minute)))
			s, err := f.dial(t).NewSession()
			if err != nil {
				t.Fatal(err)
			}
			if tty {
				if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
					t.Fatal(err)
				}
			}
			stdout, _ := s.StdoutPipe()
			if err := s.Start(`echo $$; exec sleep 1000`); err != nil {
				t.Fatal(err)
			}
			l, _ := bufio.NewReader(stdout).ReadString('\n')
			pid, err := strconv.Atoi(strings.TrimSpace(l))
			if err != nil {
				t.Fatalf("pid line %q", l)
			}
			s.Close()
			for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatal("the process outlived its channel")
				}
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	key := f.signer.PublicKey()
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewSignerFromKey(otherPriv)
	future := time.Now().Add(time.Minute)
	cases := []struct {
		name   string
		user   string
		lines  []string
		status string // the helper's exit status
	}{
		{"a key the helper does not print", f.srv.User(), []string{line(other.PublicKey(), future)}, ""},
		{"nothing printed", f.srv.User(), nil, ""},
		{"expired", f.srv.User(), []string{line(key, time.Now().Add(-time.Second))}, ""},
		{"no expiry-time", f.srv.User(), []string{string(ssh.MarshalAuthorizedKey(key))}, ""},
		{"an option it cannot honour", f.srv.User(), []string{`command="true",` + line(key, future)}, ""},
		{"helper failed", f.srv.User(), []string{line(key, future)}, "1"},
		{"another user", "not-" + f.srv.User(), []string{line(key, future)}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.helperPrints(t, c.lines...)
			os.Remove(filepath.Join(f.dir, "status"))
			if c.status != "" {
				os.WriteFile(filepath.Join(f.dir, "status"), []byte(c.status), 0o644)
			}
			os.Remove(filepath.Join(f.dir, "calls"))
			r := f.ssh(t, c.user, "", nil, "echo in")
			if r.code != 255 || r.stdout != "" || !strings.Contains(r.stderr, "Permission denied") {
				t.Errorf("got %+v, want a refusal", r)
			}
			if calls := f.helperCalls(t); c.user != f.srv.User() && calls != "" {
				t.Errorf("the helper ran for a user who cannot log in: %q", calls)
			}
		})
	}
}

func TestMatchKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := ssh.NewSignerFromKey(priv)
	key := s.PublicKey()
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	o, _ := ssh.NewSignerFromKey(otherPriv)
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	k := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	cases := []struct {
		out  string
		want error
	}{
		{`expiry-time="20300601120100Z" ` + k, nil},
		{`EXPIRY-TIME="203006011201Z" ` + k + " comment", nil},
		{"# comment\n\ngarbage\n" + line(o.PublicKey(), now.Add(time.Hour)) + `expiry-time="20300602Z" ` + k + "\n", nil},
		{`expiry-time="20300601120000Z" ` + k, ErrExpired},
		{line(o.PublicKey(), now.Add(time.Hour)), ErrNotAuthorized},
		{"", ErrNotAuthorized},
		{k, ErrOption},
		{`expiry-time="tomorrow" ` + k, ErrOption},
		{`expiry-time="20300602Z",from="10.0.0.0/8" ` + k, ErrOption},
		{`expiry-time="20300602Z",expiry-time="20300603Z" ` + k, ErrOption},
		// A refused line does not hide a good one after it.
		{`expiry-time="20300601110000Z" ` + k + "\n" + `expiry-time="20300601130000Z" ` + k, nil},
	}
	for _, c := range cases {
		if err := matchKey([]byte(c.out), key, now); !errors.Is(err, c.want) {
			t.Errorf("%q: err = %v, want %v", c.out, err, c.want)
		}
	}
	// Without Z, expiry-time is local time, as in OpenSSH.
	local := time.Date(2030, 6, 1, 12, 30, 0, 0, time.Local)
	out := `expiry-time="` + local.Format("200601021504") + `" ` + k
	if err := matchKey([]byte(out), key, local.Add(-time.Minute)); err != nil {
		t.Errorf("local expiry-time before it: %v", err)
	}
	if err := matchKey([]byte(out), key, local); !errors.Is(err, ErrExpired) {
		t.Errorf("local expiry-time at it: %v", err)
	}
}

func TestHostKeyIsKept(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateHostKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, HostKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private host key: %v, %v", fi, err)
	}
	os.Remove(filepath.Join(dir, HostKeyFile+".pub"))
	b, err := LoadOrCreateHostKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.PublicKey().Marshal(), b.PublicKey().Marshal()) {
		t.Error("the host key changed between runs")
	}
	pub, _ := os.ReadFile(filepath.Join(dir, HostKeyFile+".pub"))
	if !bytes.Equal(pub, ssh.MarshalAuthorizedKey(a.PublicKey())) {
		t.Errorf(".pub %q does not hold the host key", pub)
	}
	// A key ssh-keygen wrote (the sshd demo's) is read as is.
	if _, err := exec.LookPath("ssh-keygen"); err == nil {
		kg := t.TempDir()
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(kg, HostKeyFile)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		before, _ := os.ReadFile(filepath.Join(kg, HostKeyFile+".pub"))
		if _, err := LoadOrCreateHostKey(kg); err != nil {
			t.Fatal(err)
		}
		if after, _ := os.ReadFile(filepath.Join(kg, HostKeyFile+".pub")); !bytes.Equal(before, after) {
			t.Errorf("ssh-keygen's .pub was rewritten: %q → %q", before, after)
		}
	}
}
