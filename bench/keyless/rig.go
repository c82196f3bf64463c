package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/bench/internal/benchrig"
	"github.com/postern-dev/postern/client"
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
	// Store is the servers' --store: empty for SQLite in the data
	// directory, or a postgres:// URL (a schema of the run's own).
	Store string
	// Replicas is how many servers share Store (1 when zero; more than
	// one needs PostgreSQL). The agent registers with all their URLs and
	// connects to the first, replica A.
	Replicas int
}

// rig is a whole keyless-SSH installation on loopback: `postern server` as
// a child process (throttling off, auditing on; on PostgreSQL, possibly
// several replicas of it), an agent in a child process of its own (this
// program re-executed) registered through an activation, and a private
// sshd whose AuthorizedKeysCommand is the installed helper.
type rig struct {
	cfg  rigConfig
	dir  string             // everything the run writes; removed at the end
	srv  *benchrig.Server   // replica A, which the agent connects to
	srvs []*benchrig.Server // every replica, A first

	userKeys [][2]string // the bench users' access key ids and secrets

	env      []string     // environment for postern client commands
	admin    aws.Config   // the admin's SDK configuration
	users    []aws.Config // the bench users' SDK configurations, for replica A
	instance string       // instance id of the agent
	name     string       // its Name tag

	sshPort      int
	helperConfig string
	helperDir    string   // under libexecDir, this run's own
	helperPath   string   // the installed postern binary
	helperCmd    []string // the helper sshd runs, up to --config: the slim binary, or postern authorized-keys
	knownHosts   string   // the sshd host key for plain ssh
	helperUID    int
	helperGID    int
	madeLogin    bool // loginUser was created by this run

	procs benchrig.Procs
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
	if _, err := os.Stat(benchrig.SSHDPath()); err != nil {
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
	r := &rig{cfg: cfg, dir: dir, name: "bench-1", procs: benchrig.Procs{Dir: dir}}
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

// startServer runs `postern server` on loopback, and its other replicas
// when there are to be several: each from a data directory holding only
// the first one's secrets key.
func (r *rig) startServer(ctx context.Context) error {
	srv, err := benchrig.StartServer(ctx, &r.procs, benchrig.ServerConfig{Postern: r.cfg.Postern, Dir: r.dir, Listen: "127.0.0.1:0", Store: r.cfg.Store})
	if err != nil {
		return err
	}
	r.srv, r.env, r.admin = srv, srv.Env, srv.Admin
	r.srvs = []*benchrig.Server{srv}
	for i := 1; i < r.cfg.Replicas; i++ {
		rep, err := srv.StartReplica(ctx, &r.procs, benchrig.ServerConfig{Postern: r.cfg.Postern, Dir: r.dir, Listen: "127.0.0.1:0",
			Name: replicaProc(i)})
		if err != nil {
			return fmt.Errorf("start replica %s: %w", replicaLetter(i), err)
		}
		r.srvs = append(r.srvs, rep)
	}
	return nil
}

// replicaLetter names the i-th replica: A, B, …
func replicaLetter(i int) string { return string(rune('A' + i)) }

// replicaProc is the i-th replica's child process (and data directory)
// name: server, server-b, …
func replicaProc(i int) string {
	if i == 0 {
		return "server"
	}
	return "server-" + strings.ToLower(replicaLetter(i))
}

// serverURLs are the replicas' URLs, A first, as the agent registers
// with them (`--server A,B`).
func (r *rig) serverURLs() string {
	urls := make([]string, len(r.srvs))
	for i, s := range r.srvs {
		urls[i] = s.Info.URL
	}
	return strings.Join(urls, ",")
}

// benchPolicy lets the bench users push keys, nothing else.
const benchPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"Push","Effect":"Allow",` +
	`"Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"arn:aws:ec2:*:*:instance/*"}]}`

// createUsers makes the IAM users whose access keys the push benchmarks
// sign with: ordinary users under a policy, not the admin.
func (r *rig) createUsers(ctx context.Context) error {
	for i := range r.cfg.BenchUsers {
		id, secret, err := r.srv.CreateUser(ctx, fmt.Sprintf("bench-%d", i+1), "push", benchPolicy)
		if err != nil {
			return err
		}
		cfg, err := r.srv.AWSConfig(id, secret, 64)
		if err != nil {
			return err
		}
		r.users = append(r.users, cfg)
		r.userKeys = append(r.userKeys, [2]string{id, secret})
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
	port, err := benchrig.FreePort()
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
		Server: r.serverURLs(), ActivationID: act.ActivationId, ActivationCode: act.ActivationCode, CABundle: string(r.srv.CA),
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
	if _, err := r.procs.Spawn("sshd", nil, benchrig.SSHDPath(), "-D", "-e", "-f", sshdConfig); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := r.procs.Spawn("agent", nil, self, agentChildArg, "-state-dir", state, "-socket", socket, "-ssh-dir", pub,
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
		if p := r.procs.FirstExited(); p != nil {
			return fmt.Errorf("%s exited: %s", p.Name, p.Tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the instance did not come up in 30s\nagent: %s\nsshd: %s", r.procs.Get("agent").Tail(), r.procs.Get("sshd").Tail())
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

// stop ends the children (agent first, server last), removes the helper
// and the run's directory.
func (r *rig) stop() {
	r.procs.StopAll()
	if r.helperDir != "" {
		os.RemoveAll(r.helperDir)
	}
	if r.madeLogin {
		_ = exec.Command("userdel", loginUser).Run()
	}
	os.RemoveAll(r.dir)
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

// runAgentChild is the agent process: this program re-executed with
// agentChildArg. It runs agent.Agent as `postern agent run` does, but
// reports the loopback address the private sshd listens on.
func runAgentChild(args []string) error {
	fs := benchrig.NewFlagSet(agentChildArg)
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
	ctx, stop := benchrig.SignalContext()
	defer stop()
	return a.Run(ctx)
}

// describe tells a person how to reach the rig (-hold).
func (r *rig) describe(w io.Writer) {
	fmt.Fprintf(w, "instance %s (%s), sshd on 127.0.0.1:%d, helper config %s\n", r.instance, r.name, r.sshPort, r.helperConfig)
	for _, p := range r.procs.All() {
		fmt.Fprintf(w, "%s: pid %d, log %s\n", p.Name, p.Pid(), p.Log)
	}
	fmt.Fprintln(w, "environment for postern and AWS tools:")
	for _, kv := range r.env[1:] {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	fmt.Fprintln(w, "waiting for Ctrl-C")
}
