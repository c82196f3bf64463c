package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/server"
)

// libexecDir is where the rig installs the sshd helper for its private
// sshd, in a directory of its own: a root-owned path as sshd demands,
// beside (not over) the one `postern agent install` and `postern dev` use.
// It is removed at the end.
const libexecDir = "/usr/local/libexec"

// helperUserName is the AuthorizedKeysCommandUser, as `postern agent
// install` and `postern dev` set it up.
const helperUserName = "postern"

// loginUser is the OS user the benchmarks log in as: a plain account with
// /bin/sh and no start-up files, so that a login measures ssh and Postern
// rather than some shell's rc files (root's may run anything).
const loginUser = "postern-bench"

// rigConfig says what the rig runs.
type rigConfig struct {
	Postern    string // the postern binary under test
	BenchUsers int    // IAM users with their own access keys
}

// rig is a whole keyless-SSH installation on loopback: `postern server` as
// a child process (throttling off, auditing on), an agent in a child
// process of its own (this program re-executed) registered through an
// activation, and a private sshd whose AuthorizedKeysCommand is the
// installed helper.
type rig struct {
	cfg  rigConfig
	dir  string // everything the run writes; removed at the end
	info server.Info
	ca   []byte

	env      []string   // environment for postern client commands
	admin    aws.Config // the admin's SDK configuration
	users    []aws.Config
	instance string // instance id of the agent
	name     string // its Name tag

	sshPort      int
	helperConfig string
	helperDir    string   // under libexecDir, this run's own
	helperPath   string   // the installed postern binary
	helperCmd    []string // the helper sshd runs, up to --config: the slim binary, or postern authorized-keys
	knownHosts   string   // the sshd host key for plain ssh
	helperUID    int
	helperGID    int
	madeLogin    bool // loginUser was created by this run

	procs []*child
}

// child is a process the rig started.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string // file holding its output
	done chan struct{}
}

// tail returns the end of the child's output, for error messages.
func (c *child) tail() string {
	b, _ := os.ReadFile(c.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// startRig sets everything up and waits until the instance is running and
// its sshd answers.
func startRig(ctx context.Context, cfg rigConfig) (_ *rig, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the keyless benchmarks run a real sshd with the helper installed under /usr/local/libexec and must run as root (make bench uses sudo)")
	}
	bin, err := filepath.Abs(cfg.Postern)
	if err != nil {
		return nil, err
	}
	cfg.Postern = bin
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (apt-get install openssh-client)", tool)
		}
	}
	if _, err := os.Stat(sshdPath()); err != nil {
		return nil, errors.New("sshd is not installed (apt-get install openssh-server, or run make demo once)")
	}
	dir, err := os.MkdirTemp("", "postern-bench-")
	if err != nil {
		return nil, err
	}
	// sshd and the helper user read files in here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	r := &rig{cfg: cfg, dir: dir, name: "bench-1"}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	if err := r.startServer(ctx); err != nil {
		return nil, err
	}
	if err := r.createUsers(ctx); err != nil {
		return nil, err
	}
	if err := r.startInstance(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// startServer runs `postern server` and loads its address, CA and admin
// credentials.
func (r *rig) startServer(ctx context.Context) error {
	data := filepath.Join(r.dir, "server")
	// Throttling off: the sustained figure is the server's capacity, not
	// the per-key rate limit (200/s by default).
	if _, err := r.spawn("server", r.cfg.Postern, "server", "--listen", "127.0.0.1:0", "--data-dir", data,
		"--throttle-rate", "0", "--log-level", "warn", "--shutdown-grace", "5s"); err != nil {
		return err
	}
	home := filepath.Join(r.dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, r.cfg.Postern, "env", "--data-dir", data, "--wait", "30s")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("postern env: %v: %s\nserver: %s", err, exitText(err), r.procs[0].tail())
	}
	// A clean environment for client commands: no personal ~/.aws, the
	// variables `postern env` prints.
	r.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "USER=root", "LOGNAME=root"}
	vars := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, "'")
			vars[k] = v
			r.env = append(r.env, k+"="+v)
		}
	}
	if r.info, err = server.ReadInfo(data); err != nil {
		return err
	}
	if r.ca, err = os.ReadFile(r.info.CABundle); err != nil {
		return err
	}
	r.admin, err = r.awsConfig(vars["AWS_ACCESS_KEY_ID"], vars["AWS_SECRET_ACCESS_KEY"], 4)
	return err
}

// awsConfig is an SDK configuration for one access key. Retries are off so
// that every failure is counted, and the connection pool holds conns idle
// connections so that concurrent callers reuse them.
func (r *rig) awsConfig(id, secret string, conns int) (aws.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(r.ca) {
		return aws.Config{}, errors.New("the server's CA bundle holds no certificate")
	}
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		t.MaxIdleConns = conns
		t.MaxIdleConnsPerHost = conns
	})
	return aws.Config{
		Region:       r.info.Region,
		BaseEndpoint: aws.String(r.info.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		HTTPClient:   hc,
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	}, nil
}

// benchPolicy lets the bench users push keys, nothing else.
const benchPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"Push","Effect":"Allow",` +
	`"Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"arn:aws:ec2:*:*:instance/*"}]}`

// createUsers makes the IAM users whose access keys the push benchmarks
// sign with: ordinary users under a policy, not the admin.
func (r *rig) createUsers(ctx context.Context) error {
	c := iam.NewFromConfig(r.admin)
	for i := range r.cfg.BenchUsers {
		name := fmt.Sprintf("bench-%d", i+1)
		if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
			return fmt.Errorf("create user %s: %w", name, err)
		}
		if _, err := c.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name),
			PolicyName: aws.String("push"), PolicyDocument: aws.String(benchPolicy)}); err != nil {
			return fmt.Errorf("policy for %s: %w", name, err)
		}
		k, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("access key for %s: %w", name, err)
		}
		cfg, err := r.awsConfig(aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey), 64)
		if err != nil {
			return err
		}
		r.users = append(r.users, cfg)
	}
	return nil
}

// startInstance registers an agent through an activation, starts sshd
// with the helper and the agent, and waits until the instance is running.
func (r *rig) startInstance(ctx context.Context) error {
	var act struct{ ActivationId, ActivationCode string }
	if err := client.CallJSON(ctx, r.admin, "AmazonSSM", "ssm", "CreateActivation", map[string]any{
		"DefaultInstanceName": r.name, "RegistrationLimit": 1, "IamRole": "postern-agent",
		"ExpirationDate": float64(time.Now().Add(time.Hour).Unix()), "Tags": []any{},
	}, &act); err != nil {
		return fmt.Errorf("create an activation: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	r.sshPort = port
	pub := filepath.Join(r.dir, "instance") // readable by sshd and the helper user
	if err := os.MkdirAll(pub, 0o755); err != nil {
		return err
	}
	hostKey := filepath.Join(pub, "ssh_host_ed25519_key")
	if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		return err
	}
	f := strings.Fields(string(hostPub))
	r.knownHosts = filepath.Join(r.dir, "known_hosts")
	if err := os.WriteFile(r.knownHosts, fmt.Appendf(nil, "[127.0.0.1]:%d %s %s\n", port, f[0], f[1]), 0o600); err != nil {
		return err
	}
	if r.helperUID, r.helperGID, err = helperAccount(); err != nil {
		return err
	}
	if _, err := user.Lookup(loginUser); err != nil {
		// '*': no password, but not locked, which sshd without PAM refuses.
		if out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home", "--home-dir", "/",
			"--shell", "/bin/sh", "--password", "*", loginUser).CombinedOutput(); err != nil {
			return fmt.Errorf("useradd %s: %v: %s", loginUser, err, out)
		}
		r.madeLogin = true
	}
	socket := filepath.Join(pub, "agent.sock")
	r.helperConfig = filepath.Join(pub, "helper.json")
	state := filepath.Join(r.dir, "agent")
	st, err := agent.Register(ctx, agent.Registration{
		Server: r.info.URL, ActivationID: act.ActivationId, ActivationCode: act.ActivationCode, CABundle: string(r.ca),
		StateDir: state, HelperConfig: r.helperConfig, SocketPath: socket, Facts: agentFacts(pub, port),
	})
	if err != nil {
		return fmt.Errorf("register the agent: %w", err)
	}
	r.instance = st.InstanceID

	if err := os.MkdirAll(libexecDir, 0o755); err != nil {
		return err
	}
	if r.helperDir, err = os.MkdirTemp(libexecDir, "postern-bench-"); err != nil {
		return err
	}
	if err := os.Chmod(r.helperDir, 0o755); err != nil {
		return err
	}
	r.helperPath = filepath.Join(r.helperDir, "postern")
	in := agent.DefaultInstaller(r.cfg.Postern, nil)
	in.LibexecPath = r.helperPath
	in.HelperPath = filepath.Join(r.helperDir, agent.HelperName) // used when make build left the slim helper beside postern
	if err := in.CopyBinary(); err != nil {
		return fmt.Errorf("install the helper: %w", err)
	}
	r.helperCmd = strings.Fields(in.HelperCommand())
	sshdConfig := filepath.Join(pub, "sshd_config")
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile none
AuthorizedKeysCommand %s --config %s %%u %%f
AuthorizedKeysCommandUser %s
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
`, port, hostKey, filepath.Join(pub, "sshd.pid"), in.HelperCommand(), r.helperConfig, helperUserName)
	if err := os.WriteFile(sshdConfig, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	if _, err := r.spawn("sshd", sshdPath(), "-D", "-e", "-f", sshdConfig); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := r.spawn("agent", self, agentChildArg, "-state-dir", state, "-socket", socket, "-ssh-dir", pub,
		"-ssh-port", strconv.Itoa(port), "-helper-uid", strconv.Itoa(r.helperUID), "-helper-gid", strconv.Itoa(r.helperGID)); err != nil {
		return err
	}
	ec := ec2.NewFromConfig(r.admin)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
			out, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{r.instance}})
			if err == nil && len(out.Reservations) == 1 && len(out.Reservations[0].Instances) == 1 &&
				out.Reservations[0].Instances[0].State != nil && out.Reservations[0].Instances[0].State.Name == ec2types.InstanceStateNameRunning {
				return nil
			}
		}
		for _, p := range r.procs {
			if p.exited() {
				return fmt.Errorf("%s exited: %s", p.name, p.tail())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the instance did not come up in 30s\nagent: %s\nsshd: %s", r.proc("agent").tail(), r.proc("sshd").tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// agentFacts are what the agent reports: the loopback sshd.
func agentFacts(sshDir string, port int) agent.Facts {
	return agent.Facts{SSHDir: sshDir, OSRelease: "/etc/os-release", SSHPort: port, PrivateIPs: []string{"127.0.0.1"}}
}

// spawn starts a long-running child whose output goes to a log file.
func (r *rig) spawn(name, path string, args ...string) (*child, error) {
	logPath := filepath.Join(r.dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		lf.Close()
		close(c.done)
	}()
	r.procs = append(r.procs, c)
	return c, nil
}

func (r *rig) proc(name string) *child {
	for _, p := range r.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// stop ends the children (agent first, server last), removes the helper
// and the run's directory.
func (r *rig) stop() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		p := r.procs[i]
		if p.exited() {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if r.helperDir != "" {
		os.RemoveAll(r.helperDir)
	}
	if r.madeLogin {
		_ = exec.Command("userdel", loginUser).Run()
	}
	os.RemoveAll(r.dir)
}

// cpuTime returns the CPU time (user + system) a child has used so far.
func (r *rig) cpuTime(name string) time.Duration {
	p := r.proc(name)
	if p == nil || p.exited() {
		return 0
	}
	return procCPU(p.cmd.Process.Pid)
}

// procCPU reads a process's user + system time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sshdPath() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	return "/usr/sbin/sshd"
}

// helperAccount returns the uid and gid of the helper's locked system
// user, creating it as `postern agent install` would.
func helperAccount() (int, int, error) {
	if _, err := user.Lookup(helperUserName); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", helperUserName).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("useradd %s: %v: %s", helperUserName, err, out)
		}
	}
	u, err := user.Lookup(helperUserName)
	if err != nil {
		return 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// newKey makes an Ed25519 key pair and returns the authorized_keys line
// and its SHA256 fingerprint. When path is set the private key is written
// there (0600) for ssh -i.
func newKey(path string) (line, fingerprint string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	if path != "" {
		blk, err := ssh.MarshalPrivateKey(priv, "postern bench")
		if err != nil {
			return "", "", err
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			return "", "", err
		}
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), ssh.FingerprintSHA256(sp), nil
}

// exitText is a failed command's stderr, when it has one.
func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// runAgentChild is the agent process: this program re-executed with
// agentChildArg. It runs agent.Agent as `postern agent run` does, but
// reports the loopback address the private sshd listens on.
func runAgentChild(args []string) error {
	fs := newFlagSet(agentChildArg)
	state := fs.String("state-dir", "", "agent state")
	socket := fs.String("socket", "", "helper socket")
	sshDir := fs.String("ssh-dir", "", "host keys")
	sshPort := fs.Int("ssh-port", 22, "sshd port")
	uid := fs.Int("helper-uid", -1, "helper uid")
	gid := fs.Int("helper-gid", -1, "helper gid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		StateDir: *state, SocketPath: *socket, HelperUID: *uid, HelperGID: *gid,
		Facts:      agentFacts(*sshDir, *sshPort),
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		MaxBackoff: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return a.Run(ctx)
}

// describe tells a person how to reach the rig (-hold).
func (r *rig) describe(w io.Writer) {
	fmt.Fprintf(w, "instance %s (%s), sshd on 127.0.0.1:%d, helper config %s\n", r.instance, r.name, r.sshPort, r.helperConfig)
	for _, p := range r.procs {
		fmt.Fprintf(w, "%s: pid %d, log %s\n", p.name, p.cmd.Process.Pid, p.log)
	}
	fmt.Fprintln(w, "environment for postern and AWS tools:")
	for _, kv := range r.env[1:] {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	fmt.Fprintln(w, "waiting for Ctrl-C")
}
