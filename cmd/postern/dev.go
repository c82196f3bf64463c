package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/devsshd"
	"github.com/postern-dev/postern/server"
)

// libexecHelper returns the installer dev copies the sshd helper with:
// sshd runs an AuthorizedKeysCommand only from a root-owned path, so this
// binary goes to /usr/local/libexec/postern and, when make build left one
// next to it, the slim postern-authorized-keys beside it — which is then
// the helper sshd runs.
func libexecHelper() (*agent.Installer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return agent.DefaultInstaller(self, nil), nil
}

// runDev runs a whole Postern in one process: the server on the embedded
// store, and a demo instance that is a real SSH server reached through the
// real agent and helper path — a private OpenSSH sshd when running as root,
// else the built-in devsshd. It then logs in with `postern ssh` to prove it.
func runDev(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("dev", "dev [--data-dir DIR] [--listen ADDR] [--ssh-server auto|sshd|builtin]",
		"make demo        # builds and runs: postern dev\n"+
			"postern dev --data-dir ./postern-dev")
	dataDir := fs.String("data-dir", "", "where to keep state (default: a new temporary directory)")
	listen := fs.String("listen", "127.0.0.1:7443", "address of the API")
	sshPort := fs.Int("ssh-port", 0, "loopback port of the demo instance's SSH server (default: a free one)")
	name := fs.String("instance-name", "demo-1", "Name tag of the demo instance")
	sshServer := fs.String("ssh-server", "auto", "the demo instance's SSH server: sshd (OpenSSH; root, installed when missing on Debian), "+
		"builtin (a development server that only lets in the user postern runs as), or auto (sshd as root, else builtin)")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	builtin, err := chooseSSHServer(ctx, m, *sshServer)
	if err != nil {
		return err
	}
	dir := *dataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "postern-dev-"); err != nil {
			return err
		}
	}
	dir, _ = filepath.Abs(dir)
	logger := slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.Open(ctx, server.Config{
		Listen: *listen, DataDir: filepath.Join(dir, "server"), Region: "us-east-1", Store: "sqlite",
		DigestInterval: time.Minute, ShutdownGrace: 5 * time.Second,
		// The demo instance lives on this host, at 127.0.0.1.
		ConsoleDialLoopback: true,
	}, logger, func(string) {})
	if err != nil {
		return err
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	info := srv.Info()

	env, err := devEnv(m, filepath.Join(dir, "server"))
	if err != nil {
		return err
	}
	// sshd runs its AuthorizedKeysCommand only from a root-owned path;
	// the built-in server runs this very binary.
	if !builtin {
		if err := installHelper(); err != nil {
			return err
		}
	}
	inst, osUser, stopInstance, err := startDemoInstance(ctx, m, env, dir, info, *name, *sshPort, builtin, logger)
	if err != nil {
		stopServe()
		<-served
		return err
	}
	defer stopInstance()

	self, _ := os.Executable()
	fmt.Fprintf(m.Stdout, "Demo instance %s (%s) is running; logging in with postern ssh:\n\n$ postern ssh %s -- 'echo hello from $(hostname)'\n", *name, inst, *name)
	cmd := exec.CommandContext(ctx, self, "ssh", *name, "--", "echo hello from $(hostname)")
	cmd.Env = env
	try := "postern ssh " + *name
	if osUser != "" {
		// The built-in server lets in only the user it runs as.
		cmd.Env = append(cmd.Env, "USER="+osUser)
		if m.defaultOSUser() != osUser {
			try = "postern ssh --os-user " + osUser + " " + *name
		}
	}
	cmd.Stdout, cmd.Stderr = m.Stdout, m.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the demo login failed: %w", err)
	}
	consolePassword, err := setDevConsolePassword(ctx, self, env)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "\nPostern API: %s\nConsole: %s/console/ (sign in as admin, password %s; this demo's only, the browser must trust %s)\nPoint AWS tools and postern at it with:\n  eval \"$(%s env --data-dir %s)\"\nThen try: %s   |   aws ec2 describe-instances\nServing until Ctrl-C.\n",
		info.URL, info.URL, consolePassword, info.CABundle, self, filepath.Join(dir, "server"), try)
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	stopServe()
	return <-served
}

// chooseSSHServer decides between OpenSSH's sshd and the built-in server
// (true), installing sshd when it is wanted and missing.
func chooseSSHServer(ctx context.Context, m *Main, mode string) (builtin bool, err error) {
	root := os.Geteuid() == 0
	switch mode {
	case "builtin":
		return true, nil
	case "sshd":
		if !root {
			return false, errors.New("--ssh-server sshd: a private sshd with an AuthorizedKeysCommand needs root (or use --ssh-server builtin)")
		}
		return false, ensureSSHD(ctx, m)
	case "auto":
		if !root {
			return true, nil
		}
		if err := ensureSSHD(ctx, m); err != nil {
			fmt.Fprintf(m.Stderr, "postern dev: %v; the demo instance uses the built-in SSH server instead\n", err)
			return true, nil
		}
		return false, nil
	}
	return false, usagef("dev: --ssh-server must be auto, sshd or builtin, got %q", mode)
}

// ensureSSHD installs OpenSSH's server when it is missing (Debian, root).
func ensureSSHD(ctx context.Context, m *Main) error {
	if _, err := exec.LookPath("sshd"); err == nil {
		return nil
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("sshd is not installed; install OpenSSH's server")
	}
	fmt.Fprintln(m.Stdout, "Installing openssh-server for the demo instance…")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "openssh-server"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// devEnv is the environment `postern env` would print, for subprocesses.
func devEnv(m *Main, dataDir string) ([]string, error) {
	var out bytes.Buffer
	sub := &Main{Stdin: m.Stdin, Stdout: &out, Stderr: m.Stderr, Getenv: m.Getenv}
	if err := runEnv(context.Background(), sub, []string{"--data-dir", dataDir}); err != nil {
		return nil, err
	}
	env := os.Environ()
	for _, line := range strings.Split(out.String(), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			env = append(env, k+"="+strings.Trim(v, "'"))
		}
	}
	return env, nil
}

// installHelper copies this binary, and the slim helper when there is
// one, where libexecHelper says (root-owned, 0755).
func installHelper() error {
	in, err := libexecHelper()
	if err != nil {
		return err
	}
	return in.CopyBinary()
}

// startDemoInstance registers an agent through an activation, starts the
// demo instance's SSH server on loopback (a private sshd with the helper,
// or the built-in one) and runs the agent. It returns the instance id, the
// only OS user the built-in server lets in ("" for sshd), and a function
// that stops the SSH server and the agent.
func startDemoInstance(ctx context.Context, m *Main, env []string, dir string, info server.Info, name string, port int, builtin bool, logger *slog.Logger) (string, string, func(), error) {
	self, _ := os.Executable()
	act := exec.CommandContext(ctx, self, "activation", "create", "--default-instance-name", name, "--output", "json")
	act.Env = env
	actOut, err := act.Output()
	if err != nil {
		return "", "", nil, fmt.Errorf("create the demo activation: %w", err)
	}
	var created struct{ ActivationId, ActivationCode string }
	if err := json.Unmarshal(actOut, &created); err != nil {
		return "", "", nil, fmt.Errorf("create the demo activation: %w", err)
	}
	id, code := created.ActivationId, created.ActivationCode
	// The host key, the helper's config and the agent's socket live in
	// the instance directory; the agent's own state stays private.
	pub := filepath.Join(dir, "instance")
	// sshd runs the helper as the "postern" user, which must reach the
	// helper's config and the agent's socket whatever the data directory's
	// parents allow: those two live under /run then.
	helperDir := pub
	if !builtin {
		sum := sha256.Sum256([]byte(dir))
		helperDir = filepath.Join("/run", "postern-dev-"+hex.EncodeToString(sum[:4]))
		if err := os.MkdirAll(helperDir, 0o755); err != nil {
			return "", "", nil, err
		}
	}
	socket := filepath.Join(helperDir, "agent.sock")
	helperCfg := filepath.Join(helperDir, "helper.json")
	var sshSrv *demoSSH
	if builtin {
		sshSrv, err = prepareBuiltinSSH(ctx, pub, port, self, helperCfg, logger)
	} else {
		sshSrv, err = prepareSSHD(dir, pub, port, helperCfg)
	}
	if err != nil {
		return "", "", nil, err
	}
	port = sshSrv.port
	state := filepath.Join(dir, "agent")
	facts := agent.Facts{SSHDir: pub, OSRelease: "/etc/os-release", SSHPort: port, PrivateIPs: []string{"127.0.0.1"}}
	ca, err := os.ReadFile(info.CABundle)
	if err != nil {
		sshSrv.stop()
		return "", "", nil, err
	}
	if _, _, err := agent.LoadState(state); errors.Is(err, agent.ErrNotRegistered) {
		if _, err := agent.Register(ctx, agent.Registration{Server: info.URL, ActivationID: id, ActivationCode: code, CABundle: string(ca),
			StateDir: state, HelperConfig: helperCfg, SocketPath: socket, Facts: facts}); err != nil {
			sshSrv.stop()
			return "", "", nil, fmt.Errorf("register the demo agent: %w", err)
		}
	}
	a, err := agent.New(agent.Config{StateDir: state, SocketPath: socket, HelperUID: sshSrv.helperUID, HelperGID: sshSrv.helperGID,
		Facts: facts, Logger: logger, MaxBackoff: 5 * time.Second})
	if err != nil {
		sshSrv.stop()
		return "", "", nil, err
	}
	if err := sshSrv.start(); err != nil {
		sshSrv.stop()
		return "", "", nil, err
	}
	actx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan struct{})
	go func() { a.Run(actx); close(agentDone) }()
	stop := func() {
		stopAgent()
		<-agentDone
		sshSrv.stop()
	}
	// Wait until the agent is connected and the SSH server answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			if running(ctx, env, self, a.InstanceID()) {
				return a.InstanceID(), sshSrv.osUser, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", "", nil, fmt.Errorf("the demo instance did not come up: %s", sshSrv.diag())
		}
		select {
		case <-ctx.Done():
			stop()
			return "", "", nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// demoSSH is the demo instance's SSH server, prepared (host key written,
// port chosen) but not yet serving.
type demoSSH struct {
	port                 int
	helperUID, helperGID int    // who may ask the agent's socket, besides root
	osUser               string // the only user it lets in; "" for any
	start                func() error
	stop                 func() // safe before start, and more than once
	diag                 func() string
}

// prepareSSHD sets up a private sshd whose AuthorizedKeysCommand is the
// root-owned helper, run as the locked "postern" user.
func prepareSSHD(dir, pub string, port int, helperCfg string) (*demoSSH, error) {
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	if err := os.MkdirAll(pub, 0o700); err != nil {
		return nil, err
	}
	hostKey := filepath.Join(pub, "ssh_host_ed25519_key")
	if _, err := os.Stat(hostKey); err != nil {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	helperUser, uid, gid, err := helperAccount()
	if err != nil {
		return nil, err
	}
	in, err := libexecHelper()
	if err != nil {
		return nil, err
	}
	sshdConfig := filepath.Join(pub, "sshd_config")
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile none
AuthorizedKeysCommand %s --config %s %%u %%f
AuthorizedKeysCommandUser %s
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
`, port, hostKey, filepath.Join(pub, "sshd.pid"), in.HelperCommand(), helperCfg, helperUser)
	if err := os.WriteFile(sshdConfig, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	sshd := exec.Command(sshdPath(), "-D", "-e", "-f", sshdConfig)
	sshd.Stderr = &stderr
	started := false
	return &demoSSH{port: port, helperUID: uid, helperGID: gid,
		start: func() error {
			if err := sshd.Start(); err != nil {
				return fmt.Errorf("start sshd: %w", err)
			}
			started = true
			return nil
		},
		stop: func() {
			if started {
				sshd.Process.Kill()
				sshd.Wait()
				started = false
			}
		},
		diag: func() string { return stderr.String() },
	}, nil
}

// prepareBuiltinSSH sets up devsshd: no root needed, and it runs this
// binary as the helper. The agent's socket is for this user alone.
func prepareBuiltinSSH(ctx context.Context, pub string, port int, self, helperCfg string, logger *slog.Logger) (*demoSSH, error) {
	if err := os.MkdirAll(pub, 0o700); err != nil {
		return nil, err
	}
	srv, err := devsshd.New(devsshd.Config{HostKeyDir: pub, Helper: self, HelperConfig: helperCfg, Logger: logger})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	started := false
	return &demoSSH{port: l.Addr().(*net.TCPAddr).Port, helperUID: os.Getuid(), helperGID: -1, osUser: srv.User(),
		start: func() error {
			started = true
			go func() { served <- srv.Serve(sctx, l) }()
			return nil
		},
		stop: func() {
			cancel()
			if started {
				if err := <-served; err != nil {
					logger.Warn("the built-in SSH server failed", "err", err)
				}
				started = false
			} else {
				l.Close()
			}
		},
		diag: func() string {
			return "the agent did not report the instance running (the built-in SSH server is listening)"
		},
	}, nil
}

func sshdPath() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	return "/usr/sbin/sshd"
}

// running reports whether the instance is in state running.
func running(ctx context.Context, env []string, self, id string) bool {
	cmd := exec.CommandContext(ctx, self, "instance", "list", "--output", "json", id)
	cmd.Env = env
	out, err := cmd.Output()
	return err == nil && bytes.Contains(out, []byte(`"`+postern.InstanceRunning+`"`))
}

// helperAccount returns the locked system user the sshd helper runs as,
// creating "postern" when needed.
func helperAccount() (string, int, int, error) {
	const name = "postern"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			return "", 0, 0, fmt.Errorf("useradd %s: %v: %s", name, err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return "", 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return name, uid, gid, nil
}

// setDevConsolePassword gives the demo's admin a fresh random console
// password and returns it: the demo prints it once, like the admin's key
// in admin.credentials, and it dies with the demo's data.
func setDevConsolePassword(ctx context.Context, self string, env []string) (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := base64.RawURLEncoding.EncodeToString(b)
	cmd := exec.CommandContext(ctx, self, "user", "set-password", "--password-stdin", "admin")
	cmd.Env, cmd.Stdin = env, strings.NewReader(pw+"\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("setting the demo's console password: %v: %s", err, out)
	}
	return pw, nil
}
