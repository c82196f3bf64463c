package keyless

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"
)

// The world of one test run:
//
//	root namespace                         namespace pinst-<id> ("the instance")
//	  postern server  10.77.N.1:PORT  <─ veth ─>  10.77.N.2
//	  clients: postern ssh, ssh, scp,            postern agent run (dials out to the server)
//	  rsync, the Go SDK, boto3, aws CLI          sshd :22 ─ AuthorizedKeysCommand postern authorized-keys
//
// The clients run in the root namespace: it is "another namespace" than
// the instance's, it reaches the instance only over the veth link (as a
// laptop reaches a server), and the tools it runs (python3, aws, ssh) need
// nothing more than the machine already has. N is random per run, so that
// runs in parallel never share an address; everything lives on the veth
// pair and loopback.

const (
	// keyLifetime is the server's pushed-key lifetime in these tests.
	keyLifetime = 3 * time.Second
	// agentTimeout is the silence after which an instance becomes stopped
	// (the server's minimum).
	agentTimeout = 4 * time.Second
	region       = "us-east-1"
	vpcCIDR      = "10.77.0.0/16"
)

// world is one run's instance, server and users.
type world struct {
	id         string // random suffix of every name
	ns         string // the instance's network namespace
	vethRoot   string
	hostIP     string // the root side of the link: the server's address
	instIP     string // the instance's address
	subnetCIDR string

	runDir     string   // root-owned 0755: helper config, socket, host keys, agent state
	libexecDir string   // root-owned 0755 under /usr/local/libexec: the helper binary
	helperBin  string   // the root-owned copy of the helper sshd runs
	helperCmd  []string // its command line up to --config: helperBin alone, or with authorized-keys
	probeBin   string   // a copy of this test binary, for the socket probe

	helperUser   string // the agent's --helper-user and sshd's AuthorizedKeysCommandUser
	strangerUser string // a user in the helper's group, but not the helper
	helperConfig string
	socket       string
	stateDir     string
	sshDir       string // sshd's host keys, reported by the agent
	hostKeyLine  string // "ssh-ed25519 AAAA…"
	knownHosts   string // a known_hosts file naming instIP with the host key
	xferDir      string // a directory alice owns, for scp and rsync

	dataDir string
	server  *proc
	URL     string
	env     map[string]string // what `postern env` exports
	home    string            // HOME of the client commands
	http    *http.Client

	vpcID, subnetID string
	activationID    string
	activationCode  string
	instanceID      string
	instanceName    string

	agent *proc
	sshd  *proc

	keyLifetime time.Duration // the server's --key-lifetime

	// store is the servers' --store ("": the embedded SQLite); servers is
	// what the agent registers with ("": URL).
	store   string
	servers string
	// serverKilled is set when a test killed the server on purpose.
	serverKilled bool

	// The endpoint topology (eice_test.go) only.
	edge       bool
	edgeNS     string // the endpoint's namespace
	clientNS   string // the client's namespace
	edgeIP     string // where the endpoint listens for clients
	clientLink string // the client's leg to the edge, in clientNS
}

// requireTools fails the test unless every tool the scenario uses is
// installed.
func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the keyless end-to-end tests must run as root (network namespaces, sshd, users); CI runs as root")
	}
	var missing []string
	for _, tool := range []struct{ cmd, pkg string }{
		{"ip", "iproute2"}, {"sshd", "openssh-server"}, {"ssh", "openssh-client"}, {"ssh-keygen", "openssh-client"},
		{"scp", "openssh-client"}, {"rsync", "rsync"}, {"aws", "awscli"}, {"python3", "python3"},
		{"useradd", "passwd"}, {"usermod", "passwd"}, {"userdel", "passwd"},
	} {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", tool.cmd)); err != nil {
				missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tool.cmd, tool.pkg))
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing tools: %s; %s", strings.Join(missing, ", "), ciHint)
	}
	if out, err := exec.Command("python3", "-c", "import boto3, botocore").CombinedOutput(); err != nil {
		t.Fatalf("python3 cannot import boto3: %v\n%s\n%s (apt-get install python3-boto3)", err, out, ciHint)
	}
}

// sshdPath is the OpenSSH server binary.
func sshdPath() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	return "/usr/sbin/sshd"
}

// newWorld builds the instance namespace, the server, the users and the
// binaries, registers the agent through an activation (first with a wrong
// code, which must not count) and starts the agent and sshd. Everything
// is undone when t ends.
func newWorld(t *testing.T) *world {
	t.Helper()
	return buildWorld(t, false, "")
}

// buildWorld is newWorld; with edge, the network is the endpoint
// topology of eice_test.go instead of one link; with store, the server
// keeps its state there instead of in SQLite.
func buildWorld(t *testing.T, edge bool, store string) *world {
	t.Helper()
	requireTools(t)
	w := &world{id: randomHex(t, 3), home: t.TempDir(), edge: edge, keyLifetime: keyLifetime, store: store}
	if edge {
		// The endpoint tests are about tunnels, not expiry: keys live as
		// long as in production, so that no slow step races them.
		w.keyLifetime = 60 * time.Second
	}
	w.ns = "pinst-" + w.id
	w.vethRoot = "pvr" + w.id
	w.instanceName = "web-" + w.id

	w.setUpUsers(t)
	w.setUpDirs(t)
	if edge {
		w.setUpEdgeNetwork(t)
	} else {
		w.setUpNetwork(t)
	}
	w.startServer(t)
	w.declareNetwork(t)
	return w
}

// setUpUsers makes sure alice and bob can log in (they are left in place:
// another run may be using them) and creates this run's helper user and a
// stranger in the helper's group (removed at the end).
func (w *world) setUpUsers(t *testing.T) {
	t.Helper()
	for _, name := range []string{"alice", "bob"} {
		if _, err := user.Lookup(name); err != nil {
			useradd(t, "-m", "-s", "/bin/sh", name)
		}
		// useradd leaves the account locked ("!"), which sshd refuses
		// even for public-key logins without PAM.
		retryUserCommand(t, "usermod", "-p", "*", name)
	}
	w.helperUser = "pstn-h-" + w.id
	w.strangerUser = "pstn-s-" + w.id
	useradd(t, "--system", "--user-group", "--no-create-home", "-s", "/usr/sbin/nologin", w.helperUser)
	t.Cleanup(func() { userdel(t, w.helperUser) })
	useradd(t, "--system", "--gid", w.helperUser, "--no-create-home", "-s", "/usr/sbin/nologin", w.strangerUser)
	t.Cleanup(func() { userdel(t, w.strangerUser) }) // before the helper: it holds the group
}

func useradd(t *testing.T, args ...string) {
	t.Helper()
	retryUserCommand(t, "useradd", args...)
}

func userdel(t *testing.T, name string) {
	t.Helper()
	r := run(t, exec.Command("userdel", name))
	if r.Code != 0 {
		t.Errorf("userdel %s: %s", name, r)
	}
}

// retryUserCommand runs a shadow-utils command, retrying while another
// run holds the lock on /etc/passwd (exit status 10 for useradd, 8 for
// usermod when busy; anything else fails at once).
func retryUserCommand(t *testing.T, name string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := run(t, exec.Command(name, args...))
		if r.Code == 0 {
			return
		}
		busy := strings.Contains(r.Stderr, "lock") || strings.Contains(r.Stderr, "try again")
		if !busy || time.Now().After(deadline) {
			t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
		}
		time.Sleep(200 * time.Millisecond) // backoff between retries, not synchronisation
	}
}

func lookupIDs(t *testing.T, name string) (uid, gid uint32) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	a, _ := strconv.Atoi(u.Uid)
	b, _ := strconv.Atoi(u.Gid)
	return uint32(a), uint32(b)
}

// setUpDirs creates the run directory (helper config, socket, host keys,
// agent state) and the root-owned libexec copy of the binary sshd runs:
// sshd refuses an AuthorizedKeysCommand under a path anyone but root may
// write, such as /tmp.
func (w *world) setUpDirs(t *testing.T) {
	t.Helper()
	w.runDir = "/run/postern-e2e-" + w.id
	mkdirOwned(t, w.runDir, 0o755)
	t.Cleanup(func() {
		if err := os.RemoveAll(w.runDir); err != nil {
			t.Errorf("remove %s: %v", w.runDir, err)
		}
	})
	w.helperConfig = filepath.Join(w.runDir, "helper.json")
	w.socket = filepath.Join(w.runDir, "sock", "agent.sock")
	w.stateDir = filepath.Join(w.runDir, "state")
	w.sshDir = filepath.Join(w.runDir, "ssh")
	mkdirOwned(t, w.sshDir, 0o755)
	w.writeHostKey(t)

	w.xferDir = filepath.Join(w.runDir, "xfer")
	mkdirOwned(t, w.xferDir, 0o700)
	uid, gid := lookupIDs(t, "alice")
	if err := os.Chown(w.xferDir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}

	// /usr/local/libexec is a standard directory: created when missing,
	// never removed. Only this run's directory below it goes.
	if err := os.MkdirAll("/usr/local/libexec", 0o755); err != nil {
		t.Fatal(err)
	}
	w.libexecDir = "/usr/local/libexec/postern-e2e-" + w.id
	mkdirOwned(t, w.libexecDir, 0o755)
	t.Cleanup(func() {
		if err := os.RemoveAll(w.libexecDir); err != nil {
			t.Errorf("remove %s: %v", w.libexecDir, err)
		}
	})
	// The slim helper when built, else postern authorized-keys.
	w.helperBin = filepath.Join(w.libexecDir, "postern")
	copyFile(t, posternBin, w.helperBin, 0o755)
	w.helperCmd = []string{w.helperBin, "authorized-keys"}
	if authKeysBin != "" {
		w.helperBin = filepath.Join(w.libexecDir, "postern-authorized-keys")
		copyFile(t, authKeysBin, w.helperBin, 0o755)
		w.helperCmd = []string{w.helperBin}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w.probeBin = filepath.Join(w.libexecDir, "socket-probe")
	copyFile(t, self, w.probeBin, 0o755)

	// sshd's privilege-separation directory (a standard one, left in place).
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
}

func mkdirOwned(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	// Mkdir's mode passes through the umask.
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}

// writeHostKey creates sshd's Ed25519 host key pair in sshDir, and a
// known_hosts file for the plain ssh logins that trusts exactly it.
func (w *world) writeHostKey(t *testing.T) {
	t.Helper()
	priv, pub := newEd25519(t)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(w.sshDir, "ssh_host_ed25519_key")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	w.hostKeyLine = pub
	if err := os.WriteFile(keyPath+".pub", []byte(pub+" root@"+w.ns+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newEd25519 returns a new Ed25519 key and its authorized_keys line
// (without a comment).
func newEd25519(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
}

// freeNet returns an N such that 10.X.N.0/24 is used by no interface or
// route of this machine for every X in seconds.
func freeNet(t *testing.T, seconds ...int) int {
	t.Helper()
	addrs := must(t, "ip", "-4", "-o", "addr", "show")
	routes := must(t, "ip", "-4", "route", "show", "table", "all")
	for tries := 0; tries < 1000; tries++ {
		n := 1 + mrand.IntN(254)
		free := true
		for _, x := range seconds {
			prefix := fmt.Sprintf("10.%d.%d.", x, n)
			free = free && !strings.Contains(addrs, prefix) && !strings.Contains(routes, prefix)
		}
		if free {
			return n
		}
	}
	t.Fatal("no free /24 in 10.77.0.0/16")
	return 0
}

// setUpNetwork creates the instance's namespace and the veth pair on a
// /24 of 10.77.0.0/16 that no interface of this machine uses yet.
func (w *world) setUpNetwork(t *testing.T) {
	t.Helper()
	n := freeNet(t, 77)
	w.hostIP = fmt.Sprintf("10.77.%d.1", n)
	w.instIP = fmt.Sprintf("10.77.%d.2", n)
	w.subnetCIDR = fmt.Sprintf("10.77.%d.0/24", n)
	vethInst := "pvi" + w.id

	must(t, "ip", "netns", "add", w.ns)
	t.Cleanup(func() { w.tearDownNetwork(t) })
	must(t, "ip", "link", "add", w.vethRoot, "type", "veth", "peer", "name", vethInst)
	must(t, "ip", "link", "set", vethInst, "netns", w.ns)
	must(t, "ip", "addr", "add", w.hostIP+"/24", "dev", w.vethRoot)
	must(t, "ip", "link", "set", w.vethRoot, "up")
	must(t, "ip", "-n", w.ns, "addr", "add", w.instIP+"/24", "dev", vethInst)
	must(t, "ip", "-n", w.ns, "link", "set", vethInst, "up")
	must(t, "ip", "-n", w.ns, "link", "set", "lo", "up")
}

// tearDownNetwork kills whatever still runs in the namespace (sshd's
// session processes, say), then deletes the namespace and the link.
func (w *world) tearDownNetwork(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "pids", w.ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if r := run(t, exec.Command("ip", "netns", "del", w.ns)); r.Code != 0 {
		t.Errorf("ip netns del %s: %s", w.ns, r)
	}
	// Deleting the namespace deletes the peer and so the pair; this is for
	// the case where the namespace was never populated.
	_ = exec.Command("ip", "link", "del", w.vethRoot).Run()
}

// inNS returns the argv that runs args inside the instance's namespace.
func (w *world) inNS(args ...string) []string {
	return append([]string{"ip", "netns", "exec", w.ns}, args...)
}

// startServer runs `postern server` on the root side of the link.
func (w *world) startServer(t *testing.T) {
	t.Helper()
	w.dataDir = t.TempDir()
	w.server, w.URL = w.startServerProc(t, w.dataDir)
	t.Cleanup(func() {
		if err := w.server.stop(t); err != nil && !w.serverKilled {
			t.Errorf("postern server exited with %v; want exit status 0\nlog:\n%s", err, w.server.Stderr)
		}
	})
	r := run(t, command(t, nil, posternBin, "env", "--data-dir", w.dataDir))
	if r.Code != 0 {
		t.Fatalf("postern env: %s", r)
	}
	w.env = parseExports(t, r.Stdout)
	if w.env["AWS_ENDPOINT_URL"] != w.URL || w.env["AWS_CA_BUNDLE"] == "" || w.env["AWS_ACCESS_KEY_ID"] == "" {
		t.Fatalf("postern env printed %q; want AWS_ENDPOINT_URL=%s, AWS_CA_BUNDLE and keys", r.Stdout, w.URL)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(w.env["AWS_CA_BUNDLE"])
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("read the server's CA %s: %v", w.env["AWS_CA_BUNDLE"], err)
	}
	w.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 60 * time.Second}
}

// startServerProc starts a server (one replica, with a store) on
// dataDir and returns it with its URL once it is listening.
func (w *world) startServerProc(t *testing.T, dataDir string) (*proc, string) {
	t.Helper()
	args := []string{posternBin, "server",
		"--data-dir", dataDir, "--listen", w.hostIP + ":0",
		"--key-lifetime", w.keyLifetime.String(), "--agent-timeout", agentTimeout.String(),
		"--digest-interval", "1s", "--shutdown-grace", "5s"}
	if w.store != "" {
		args = append(args, "--store", w.store)
	}
	p := startProc(t, "postern server", cleanEnv(t.TempDir(), nil), args...)
	const ready = "Postern server listening on "
	line, _, ok := p.Stdout.await(0, ready, p.exited, 60*time.Second)
	if !ok {
		t.Fatalf("postern server did not report %q\nstdout:\n%s\nlog:\n%s", ready, p.Stdout, p.Stderr)
	}
	rest := line[strings.Index(line, ready)+len(ready):]
	url, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(url, "https://"+w.hostIP+":") {
		t.Fatalf("server URL %q is not https://%s:PORT", url, w.hostIP)
	}
	return p, url
}

// postern runs a postern client command as the admin (configured by
// `postern env`) and returns its result.
func (w *world) postern(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(posternBin, args...)
	cmd.Env = cleanEnv(w.home, w.env)
	return run(t, cmd)
}

// mustPostern is postern that fails the test unless the command succeeds.
func (w *world) mustPostern(t *testing.T, args ...string) string {
	t.Helper()
	r := w.postern(t, args...)
	if r.Code != 0 {
		t.Fatalf("postern %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// mustPosternJSON runs a command with --output json and decodes its output.
func (w *world) mustPosternJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := w.mustPostern(t, append(args, "--output", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("postern %s --output json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// declareNetwork creates the VPC and the subnet the instance lands in.
func (w *world) declareNetwork(t *testing.T) {
	t.Helper()
	var vpc struct{ Vpc struct{ VpcId string } }
	w.mustPosternJSON(t, &vpc, "vpc", "create", "--cidr", vpcCIDR, "--tag", "Name=keyless-"+w.id)
	w.vpcID = vpc.Vpc.VpcId
	var sn struct{ Subnet struct{ SubnetId string } }
	w.mustPosternJSON(t, &sn, "subnet", "create", "--vpc-id", w.vpcID, "--cidr", w.subnetCIDR)
	w.subnetID = sn.Subnet.SubnetId
	if !strings.HasPrefix(w.vpcID, "vpc-") || !strings.HasPrefix(w.subnetID, "subnet-") {
		t.Fatalf("vpc create / subnet create returned %q and %q", w.vpcID, w.subnetID)
	}
}

// createActivation creates an activation for one host.
func (w *world) createActivation(t *testing.T) {
	t.Helper()
	var act struct{ ActivationId, ActivationCode string }
	w.mustPosternJSON(t, &act, "activation", "create", "--default-instance-name", w.instanceName,
		"--registration-limit", "1", "--expires", "1h", "--tag", "team=keyless")
	if act.ActivationId == "" || act.ActivationCode == "" {
		t.Fatalf("activation create returned %+v", act)
	}
	w.activationID, w.activationCode = act.ActivationId, act.ActivationCode
}

// register runs `postern agent register` inside the namespace with the
// given code and state directory.
func (w *world) register(t *testing.T, code, stateDir string) result {
	t.Helper()
	servers := w.servers
	if servers == "" {
		servers = w.URL
	}
	argv := w.inNS(posternBin, "agent", "register", "--server", servers,
		"--activation-id", w.activationID, "--activation-code", code,
		"--ca-bundle", w.env["AWS_CA_BUNDLE"], "--state-dir", stateDir,
		"--helper-config", w.helperConfig, "--socket", w.socket,
		"--ssh-port", "22", "--ssh-dir", w.sshDir)
	return run(t, command(t, nil, argv[0], argv[1:]...))
}

// startAgent runs `postern agent run` inside the namespace and waits
// until it is connected.
func (w *world) startAgent(t *testing.T) {
	t.Helper()
	argv := w.inNS(posternBin, "agent", "run", "--state-dir", w.stateDir, "--socket", w.socket,
		"--helper-user", w.helperUser, "--ssh-port", "22", "--ssh-dir", w.sshDir, "--log-level", "debug")
	w.agent = startProc(t, "postern agent", cleanEnv(t.TempDir(), nil), argv...)
	w.agent.await(t, 0, "connected to server", 30*time.Second)
}

// startSSHD runs a private sshd inside the namespace on instIP:22 whose
// only way in is the postern helper.
func (w *world) startSSHD(t *testing.T) {
	t.Helper()
	conf := strings.Join([]string{
		"Port 22",
		"ListenAddress " + w.instIP,
		"HostKey " + filepath.Join(w.sshDir, "ssh_host_ed25519_key"),
		"PidFile " + filepath.Join(w.runDir, "sshd.pid"),
		"AuthorizedKeysFile none",
		"AuthorizedKeysCommand " + strings.Join(w.helperCmd, " ") + " --config " + w.helperConfig + " %u %f",
		"AuthorizedKeysCommandUser " + w.helperUser,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"Subsystem sftp internal-sftp",
		"LogLevel VERBOSE",
		// The endpoint tests hold 20 tunnels to sshd before any logs in.
		"MaxStartups 64",
		"",
	}, "\n")
	confPath := filepath.Join(w.runDir, "sshd_config")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, exec.Command(sshdPath(), "-t", "-f", confPath)); r.Code != 0 {
		t.Fatalf("sshd -t rejects the test configuration: %s\n%s", r, conf)
	}
	w.sshd = startProc(t, "sshd", cleanEnv(t.TempDir(), nil), w.inNS(sshdPath(), "-D", "-e", "-f", confPath)...)
	w.sshd.await(t, 0, "Server listening on "+w.instIP+" port 22", 30*time.Second)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(w.instIP+" "+w.hostKeyLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.knownHosts = kh
}

// instance is the part of DescribeInstances a test looks at.
type instance struct {
	InstanceId       string
	PrivateIpAddress string
	SubnetId         string
	VpcId            string
	State            struct{ Name string }
	Tags             []struct{ Key, Value string }
}

// describe returns the instance as `postern instance list` shows it.
func (w *world) describe(t *testing.T, id string) instance {
	t.Helper()
	var out struct{ Instances []instance }
	w.mustPosternJSON(t, &out, "instance", "list", id)
	if len(out.Instances) != 1 {
		t.Fatalf("instance list %s: %d instances, want 1", id, len(out.Instances))
	}
	return out.Instances[0]
}

// waitState waits until the instance's state is want.
func (w *world) waitState(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := w.describe(t, w.instanceID).State.Name
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s is still %s after %s; want %s", w.instanceID, got, timeout, want)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// sshKey is a client key pair on disk.
type sshKey struct {
	Path string // private key, 0600
	Pub  string // authorized_keys line
}

// newKey writes a new Ed25519 client key into a temp dir.
func newKey(t *testing.T) sshKey {
	t.Helper()
	priv, pub := newEd25519(t)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".pub", []byte(pub+" keyless-test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return sshKey{Path: p, Pub: pub + " keyless-test"}
}

// sshArgs are the options of every plain ssh login: only this key, only
// this host key, never a prompt.
func (w *world) sshArgs(key sshKey) []string {
	return []string{"-F", "/dev/null", "-i", key.Path, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + w.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"}
}

// ssh logs in as user with key and runs command.
func (w *world) ssh(t *testing.T, key sshKey, user string, command ...string) result {
	t.Helper()
	args := append(w.sshArgs(key), "-p", "22", user+"@"+w.instIP, "--")
	return run(t, exec.Command("ssh", append(args, command...)...))
}

// loginAfterPush pushes a key for user with push and logs in with it at
// once, asserting that `id -un` prints user (see freshKey for a slow
// machine).
func (w *world) loginAfterPush(t *testing.T, what string, key sshKey, user string, push func()) {
	t.Helper()
	w.freshKey(t, what, push, func() (string, bool) {
		r := w.ssh(t, key, user, "id", "-un")
		if r.Code != 0 {
			return fmt.Sprintf("the login as %s failed: %s", user, r), false
		}
		if got := strings.TrimSpace(r.Stdout); got != user {
			t.Errorf("%s: id -un printed %q, want %q", what, got, user)
		}
		return "", true
	})
}

// eic returns an EC2 Instance Connect client of the AWS SDK for Go v2 for
// the given access key, pointed at the server with BaseEndpoint and
// trusting the data directory's CA.
func (w *world) eic(keyID, secret string) *ec2instanceconnect.Client {
	return ec2instanceconnect.NewFromConfig(aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		HTTPClient:   w.http,
		BaseEndpoint: aws.String(w.URL),
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	})
}

// adminEIC is the admin's client.
func (w *world) adminEIC() *ec2instanceconnect.Client {
	return w.eic(w.env["AWS_ACCESS_KEY_ID"], w.env["AWS_SECRET_ACCESS_KEY"])
}
