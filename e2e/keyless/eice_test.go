package keyless

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"
)

// The endpoint topology (issue 4's "Done when"):
//
//	client ns pcli-<id>                 edge ns pedge-<id>                  private ns pinst-<id>
//	  postern ssh, ssh, scp  10.80.N.1 ─── 10.80.N.2  postern endpoint run  10.77.N.1 ─── 10.77.N.2  sshd :22, agent
//	       │ 10.79.N.2                      │ 10.78.N.2 (forwards for the agent only)
//	       │                                │
//	  root ns: postern server on 10.78.N.1 (links 10.79.N.1 to the client, 10.78.N.1 to the edge)
//
// The client reaches the server (a host route to 10.78.N.1 through the
// root side of its link) and the endpoint, and nothing else: it has no
// route to 10.77.0.0/16. The private namespace reaches only the server,
// through the edge; it has no route to the client. The root namespace,
// where the test itself runs, reaches the endpoint's listener through the
// edge's other leg, for the tunnels the test opens with the Go SDK's and
// botocore's presigned URLs.

// setUpEdgeNetwork builds the three namespaces and their links.
func (w *world) setUpEdgeNetwork(t *testing.T) {
	t.Helper()
	n := freeNet(t, 77, 78, 79, 80)
	w.ns, w.edgeNS, w.clientNS = "pinst-"+w.id, "pedge-"+w.id, "pcli-"+w.id
	addr := func(x, host int) string { return fmt.Sprintf("10.%d.%d.%d", x, n, host) }
	w.hostIP = addr(78, 1)
	w.instIP = addr(77, 2)
	w.edgeIP = addr(80, 2)
	w.subnetCIDR = fmt.Sprintf("10.77.%d.0/24", n)
	for _, ns := range []string{w.ns, w.edgeNS, w.clientNS} {
		must(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { tearDownNamespace(t, ns) })
		must(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	w.vethRoot = "pvr" + w.id
	clientRoot := "pcr" + w.id
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", w.vethRoot).Run()
		_ = exec.Command("ip", "link", "del", clientRoot).Run()
	})
	// link makes a veth pair a (in nsA, "" for root) ─ b (in nsB).
	link := func(a, nsA, addrA, b, nsB, addrB string) {
		must(t, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
		for _, end := range []struct{ dev, ns, addr string }{{a, nsA, addrA}, {b, nsB, addrB}} {
			pre := []string{}
			if end.ns != "" {
				must(t, "ip", "link", "set", end.dev, "netns", end.ns)
				pre = []string{"-n", end.ns}
			}
			must(t, "ip", append(pre, "addr", "add", end.addr+"/24", "dev", end.dev)...)
			must(t, "ip", append(pre, "link", "set", end.dev, "up")...)
		}
	}
	link(w.vethRoot, "", addr(78, 1), "pve"+w.id, w.edgeNS, addr(78, 2))
	link("pei"+w.id, w.edgeNS, addr(77, 1), "pvi"+w.id, w.ns, addr(77, 2))
	link(clientRoot, "", addr(79, 1), "pcx"+w.id, w.clientNS, addr(79, 2))
	w.clientLink = "pcc" + w.id
	link("pec"+w.id, w.edgeNS, addr(80, 2), w.clientLink, w.clientNS, addr(80, 1))

	// The agent reaches the server through the edge, and only the server.
	must(t, "ip", "netns", "exec", w.edgeNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	must(t, "ip", "-n", w.ns, "route", "add", w.hostIP+"/32", "via", addr(77, 1))
	must(t, "ip", "route", "add", fmt.Sprintf("10.77.%d.0/24", n), "via", addr(78, 2))
	// The client reaches the server's address through its own link.
	must(t, "ip", "-n", w.clientNS, "route", "add", w.hostIP+"/32", "via", addr(79, 1))
	// The test, in the root namespace, reaches the endpoint's listener.
	must(t, "ip", "route", "add", w.edgeIP+"/32", "via", addr(78, 2))
}

// tearDownNamespace kills what still runs in ns and deletes it.
func tearDownNamespace(t *testing.T, ns string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if r := run(t, exec.Command("ip", "netns", "del", ns)); r.Code != 0 {
		t.Errorf("ip netns del %s: %s", ns, r)
	}
}

// inClient returns the argv that runs args in the client's namespace.
func (w *world) inClient(args ...string) []string {
	return append([]string{"ip", "netns", "exec", w.clientNS}, args...)
}

// clientPostern runs a postern client command as the admin in the
// client's namespace, with stdin from stdin (nil: none).
func (w *world) clientPostern(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	if env == nil {
		env = w.env
	}
	argv := w.inClient(append([]string{posternBin}, args...)...)
	return run(t, command(t, env, argv[0], argv[1:]...))
}

// eiceWorld is the endpoint scenario's state.
type eiceWorld struct {
	*world
	endpointID     string
	credentialFile string
	endpoint       *proc
	// tunnelHost is where clients open tunnels: the endpoint in listen
	// mode, the server in relay mode.
	tunnelHost string
	// endpointServers is the endpoint processes' --server ("": URL).
	endpointServers string

	// Console users (eiceconsole_test.go): names and session cookies, and
	// the tunnels their terminals went through.
	tunnelUser, pushOnlyUser     string
	tunnelCookie, pushOnlyCookie string
	consoleTunnels               map[string]bool
}

// newEiceWorld builds the endpoint topology (with store as the server's
// store, "": SQLite) with a registered private instance, its agent and
// sshd, and an endpoint in its subnet that no process serves yet.
func newEiceWorld(t *testing.T, store string) *eiceWorld {
	t.Helper()
	w := &eiceWorld{world: buildWorld(t, true, store)}
	w.createActivation(t)
	if r := w.register(t, w.activationCode, w.stateDir); r.Code != 0 {
		t.Fatalf("agent register: %s", r)
	}
	w.startAgent(t)
	w.startSSHD(t)
	var reg struct{ InstanceId string }
	waitFor(t, "the instance to be registered with its private address", 30*time.Second, func() bool {
		var out struct{ Instances []instance }
		w.mustPosternJSON(t, &out, "instance", "list")
		for _, in := range out.Instances {
			if in.PrivateIpAddress == w.instIP && in.SubnetId == w.subnetID {
				reg.InstanceId = in.InstanceId
			}
		}
		return reg.InstanceId != ""
	})
	w.instanceID = reg.InstanceId
	w.createEndpoint(t)
	return w
}

// TestEndpointTunnels is issue 4's "Done when" end to end: a private
// instance that only an Instance Connect Endpoint reaches, in listen mode
// and then in relay mode, from the CLI and from the console's terminal.
func TestEndpointTunnels(t *testing.T) {
	w := newEiceWorld(t, "")
	w.tunnelHost = w.edgeIP + ":8443"

	if !t.Run("PrivateIsUnreachable", w.testPrivateIsUnreachable) {
		t.FailNow()
	}
	w.startEndpoint(t, "listen")
	if !t.Run("ListenModeSSH", w.testPosternSSH) {
		t.FailNow()
	}
	t.Run("ConsoleListenMode", w.testConsoleThroughEndpoint)
	t.Run("ScpOneGiB", w.testScpOneGiB)
	t.Run("RealClientsPresign", w.testRealClientsPresign)
	t.Run("ConnectionLimit", w.testConnectionLimit)
	t.Run("MaxTunnelDuration", w.testMaxTunnelDuration)
	t.Run("PolicyCapsDuration", w.testPolicyCapsDuration)

	// Relay mode: the endpoint listens on nothing, and the client's link
	// to the edge goes down: the only way in is through the server.
	if err := w.endpoint.stop(t); err != nil {
		t.Fatalf("the listen-mode endpoint exited with %v after SIGTERM\n%s", err, w.endpoint.Stderr)
	}
	must(t, "ip", "-n", w.clientNS, "link", "set", w.clientLink, "down")
	w.startEndpoint(t, "relay")
	w.tunnelHost = strings.TrimPrefix(w.URL, "https://")
	t.Run("RelayModeSSH", w.testPosternSSH)
	t.Run("ConsoleRelayMode", w.testConsoleThroughEndpoint)
	t.Run("ProcessesShareTheLimit", w.testProcessesShareTheLimit)
}

// createEndpoint creates the endpoint in the instance's subnet and keeps
// its join credential in a 0600 file.
func (w *eiceWorld) createEndpoint(t *testing.T) {
	t.Helper()
	var created struct {
		InstanceConnectEndpoint struct{ InstanceConnectEndpointId string }
		JoinCredential          string
	}
	w.mustPosternJSON(t, &created, "endpoint", "create", "--subnet-id", w.subnetID, "--tag", "Name=edge-"+w.id)
	w.endpointID = created.InstanceConnectEndpoint.InstanceConnectEndpointId
	if w.endpointID == "" || created.JoinCredential == "" {
		t.Fatalf("endpoint create printed %+v", created)
	}
	w.credentialFile = filepath.Join(w.runDir, "endpoint.credential")
	if err := os.WriteFile(w.credentialFile, []byte(created.JoinCredential+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startEndpoint runs `postern endpoint run` in the edge namespace and
// waits until the server shows it joined where mode puts it.
func (w *eiceWorld) startEndpoint(t *testing.T, mode string) {
	t.Helper()
	w.endpoint = w.startEndpointProc(t, mode)
}

// startEndpointProc starts one endpoint process (of possibly several).
func (w *eiceWorld) startEndpointProc(t *testing.T, mode string) *proc {
	t.Helper()
	servers := w.endpointServers
	if servers == "" {
		servers = w.URL
	}
	args := []string{posternBin, "endpoint", "run", "--server", servers, "--credential-file", w.credentialFile,
		"--ca-bundle", w.env["AWS_CA_BUNDLE"], "--mode", mode}
	wantDNS := strings.TrimPrefix(w.URL, "https://")
	if mode == "listen" {
		wantDNS = w.edgeIP + ":8443"
		args = append(args, "--listen", wantDNS)
	}
	argv := append([]string{"ip", "netns", "exec", w.edgeNS}, args...)
	p := startProc(t, "postern endpoint "+mode, cleanEnv(t.TempDir(), nil), argv...)
	waitFor(t, "the endpoint to join in "+mode+" mode", 30*time.Second, func() bool {
		if p.hasExited() {
			t.Fatalf("postern endpoint run exited:\n%s", p.Stderr)
		}
		var out struct {
			InstanceConnectEndpoints []struct{ State, DnsName string }
		}
		w.mustPosternJSON(t, &out, "endpoint", "list", w.endpointID)
		return len(out.InstanceConnectEndpoints) == 1 && out.InstanceConnectEndpoints[0].State == "create-complete" &&
			out.InstanceConnectEndpoints[0].DnsName == wantDNS
	})
	p.await(t, 0, "control connection open", 30*time.Second)
	if mode == "listen" {
		waitFor(t, "the endpoint's listener", 30*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", w.edgeIP+":8443", time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return p
}

// testPrivateIsUnreachable: from the client, plain ssh to the private
// address fails, even with a freshly pushed key.
func (w *eiceWorld) testPrivateIsUnreachable(t *testing.T) {
	key := newKey(t)
	if _, err := w.adminEIC().SendSSHPublicKey(context.Background(), &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(w.instanceID), InstanceOSUser: aws.String("alice"), SSHPublicKey: aws.String(key.Pub),
	}); err != nil {
		t.Fatal(err)
	}
	argv := w.inClient(append(append([]string{"ssh"}, w.sshArgs(key)...), "-p", "22", "alice@"+w.instIP, "--", "id", "-un")...)
	r := run(t, exec.Command(argv[0], argv[1:]...))
	if r.Code == 0 {
		t.Fatalf("plain ssh from the client namespace reached the private address: %s", r)
	}
	if !strings.Contains(r.Stderr, "unreachable") {
		t.Errorf("plain ssh failed, but not for want of a route: %s", r)
	}
}

// testPosternSSH: postern ssh from the client crosses the endpoint (the
// instance has no public address, so auto picks the endpoint).
func (w *eiceWorld) testPosternSSH(t *testing.T) {
	for _, user := range []string{"alice", "bob"} {
		r := w.clientPostern(t, nil, "ssh", "--os-user", user, "--instance-id", w.instanceID, "--", "id", "-un")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != user {
			t.Fatalf("postern ssh --os-user %s through the endpoint: %s\nendpoint log:\n%s", user, r, w.endpoint.Stderr)
		}
	}
	r := w.clientPostern(t, nil, "ssh", "--connection-type", "eice", "--os-user", "alice", w.instanceID, "--", "echo", "via-eice")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "via-eice" {
		t.Fatalf("postern ssh --connection-type eice: %s", r)
	}
	r = w.clientPostern(t, nil, "ssh", "--connection-type", "direct", "--os-user", "alice", w.instanceID, "--", "true")
	if r.Code == 0 {
		t.Errorf("postern ssh --connection-type direct reached the private address from the client: %s", r)
	}
}

// testScpOneGiB copies a 1 GiB file through the endpoint with scp and the
// postern ssh-config block, and compares checksums.
func (w *eiceWorld) testScpOneGiB(t *testing.T) {
	src := filepath.Join(t.TempDir(), "one-gib")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	// Pseudo-random content (a SHA-256 counter stream): incompressible,
	// and cheap to make.
	block := make([]byte, 1<<20)
	for i := 0; i < 1024; i++ {
		for j := 0; j < len(block); j += 32 {
			sum := sha256.Sum256([]byte(fmt.Sprintf("%d/%d", i, j)))
			copy(block[j:], sum[:])
		}
		f.Write(block)
		h.Write(block)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	id := newKey(t) // the user's own identity, as ~/.ssh/id_ed25519 would be
	config := filepath.Join(t.TempDir(), "ssh_config")
	argv := w.inClient(posternBin, "ssh-config", "--identity-file", id.Path, "--user", "alice")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv(w.home, w.env) // its known_hosts file is this HOME's
	r := run(t, cmd)
	if r.Code != 0 {
		t.Fatalf("postern ssh-config: %s", r)
	}
	if err := os.WriteFile(config, []byte(r.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(w.xferDir, "one-gib")
	argv = w.inClient("scp", "-F", config, "-o", "BatchMode=yes", src, w.instanceID+":"+dst)
	cmd = exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv(w.home, w.env) // ssh-config's known_hosts lives in this HOME
	if r := run(t, cmd); r.Code != 0 {
		t.Fatalf("scp of 1 GiB through the endpoint: %s\nconfig:\n%s", r, config)
	}
	got, err := fileSHA256(dst)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("the copy's SHA-256 is %s, the original's %s", got, want)
	}
	os.Remove(dst)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tunnelURL presigns an OpenTunnel URL to the listen-mode endpoint with
// the AWS SDK for Go v2 signer. Unless told otherwise it asks for 3,599
// seconds: a URL the CLI signed in the same second from the client's
// namespace (which asks for no duration) must not be the same URL, or
// the server would take this one, from another address, for a replay.
func (w *eiceWorld) tunnelURL(t *testing.T, keyID, secret string, port, maxDuration int) string {
	t.Helper()
	if maxDuration == 0 {
		maxDuration = 3599
	}
	q := url.Values{"instanceConnectEndpointId": {w.endpointID}, "privateIpAddress": {w.instIP},
		"remotePort": {strconv.Itoa(port)}, "X-Amz-Expires": {"60"}}
	if maxDuration > 0 {
		q.Set("maxTunnelDuration", strconv.Itoa(maxDuration))
	}
	req, _ := http.NewRequest(http.MethodGet, "wss://"+w.tunnelHost+"/openTunnel?"+q.Encode(), nil)
	empty := sha256.Sum256(nil)
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret},
		req, hex.EncodeToString(empty[:]), "ec2-instance-connect", region, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// dialTunnel opens a tunnel at a presigned URL from the test's namespace.
// A refusal's error carries the answer's body.
func (w *eiceWorld) dialTunnel(ctx context.Context, signed string) (*websocket.Conn, *http.Response, error) {
	return w.dialTunnelVia(ctx, signed, "")
}

// dialTunnelVia is dialTunnel that connects to addr instead of the URL's
// host (as a load balancer in front of the URL's host would).
func (w *eiceWorld) dialTunnelVia(ctx context.Context, signed, addr string) (*websocket.Conn, *http.Response, error) {
	tr := w.http.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs}
	if addr != "" {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	c, resp, err := websocket.Dial(ctx, signed, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil && resp != nil && resp.Body != nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		err = fmt.Errorf("%w: HTTP %d %s", err, resp.StatusCode, body)
	}
	return c, resp, err
}

// sshOverTunnel logs in as alice over a tunnel with a freshly pushed key
// and returns what `id -un` printed.
func (w *eiceWorld) sshOverTunnel(t *testing.T, ctx context.Context, c *websocket.Conn) string {
	t.Helper()
	priv, pub := newEd25519(t)
	if _, err := w.adminEIC().SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(w.instanceID), InstanceOSUser: aws.String("alice"), SSHPublicKey: aws.String(pub),
	}); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(w.hostKeyLine))
	if err != nil {
		t.Fatal(err)
	}
	conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
	sc, chans, reqs, err := ssh.NewClientConn(conn, w.instIP+":22", &ssh.ClientConfig{
		User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("SSH over the tunnel: %v", err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("id -un")
	if err != nil {
		t.Fatalf("id -un over the tunnel: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// testRealClientsPresign: a URL presigned by the Go SDK's signer and one
// presigned by botocore exactly as the AWS CLI's open-tunnel does both
// carry an SSH session.
func (w *eiceWorld) testRealClientsPresign(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	keyID, secret := w.env["AWS_ACCESS_KEY_ID"], w.env["AWS_SECRET_ACCESS_KEY"]
	c, resp, err := w.dialTunnel(ctx, w.tunnelURL(t, keyID, secret, 22, 0))
	if err != nil {
		t.Fatalf("a tunnel presigned by the Go SDK: %v", err)
	}
	if resp.Header.Get("x-amzn-RequestId") == "" {
		t.Error("the handshake answer carries no x-amzn-RequestId")
	}
	if got := w.sshOverTunnel(t, ctx, c); got != "alice" {
		t.Errorf("over the Go SDK's tunnel id -un printed %q", got)
	}

	script := filepath.Join(repoRoot, "e2e", "keyless", "testdata", "presign_open_tunnel.py")
	r := run(t, command(t, w.env, "python3", script, w.edgeIP+":8443", w.endpointID, w.instIP, "22", "3598"))
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "wss://") {
		t.Fatalf("botocore presign: %s", r)
	}
	c, _, err = w.dialTunnel(ctx, strings.TrimSpace(r.Stdout))
	if err != nil {
		t.Fatalf("a tunnel presigned by botocore: %v", err)
	}
	if got := w.sshOverTunnel(t, ctx, c); got != "alice" {
		t.Errorf("over botocore's tunnel id -un printed %q", got)
	}
}

// testConnectionLimit holds 20 tunnels open, sees the 21st refused with
// a clear error, and all 20 still carrying data.
func (w *eiceWorld) testConnectionLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	keyID, secret := w.env["AWS_ACCESS_KEY_ID"], w.env["AWS_SECRET_ACCESS_KEY"]
	conns := make([]net.Conn, 20)
	for i := range conns {
		c, _, err := w.dialTunnel(ctx, w.tunnelURL(t, keyID, secret, 22, 0))
		if err != nil {
			t.Fatalf("tunnel %d of 20: %v", i+1, err)
		}
		conns[i] = websocket.NetConn(ctx, c, websocket.MessageBinary)
		defer conns[i].Close()
		// sshd speaks first: the banner shows the tunnel carries data.
		line, err := bufio.NewReader(conns[i]).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Fatalf("tunnel %d: sshd's banner %q, %v", i+1, line, err)
		}
	}
	_, resp, err := w.dialTunnel(ctx, w.tunnelURL(t, keyID, secret, 22, 0))
	if err == nil {
		t.Fatal("a 21st tunnel was opened")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the 21st tunnel: %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "20") || !strings.Contains(string(body), "ErrorCode") {
		t.Errorf("the 21st tunnel's refusal does not name the limit: %s", body)
	}
	// Every one of the 20 still carries data both ways: the client's
	// banner makes sshd send its key exchange.
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.WriteString(c, "SSH-2.0-postern-limit-test\r\n"); err != nil {
				errs <- fmt.Errorf("tunnel %d: write: %w", i+1, err)
				return
			}
			buf := make([]byte, 64)
			if n, err := c.Read(buf); err != nil || n == 0 {
				errs <- fmt.Errorf("tunnel %d: no key exchange from sshd: %w", i+1, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testMaxTunnelDuration: open-tunnel --max-tunnel-duration 5 ends at
// about 5 s with a reason the client prints.
func (w *eiceWorld) testMaxTunnelDuration(t *testing.T) {
	argv := w.inClient(posternBin, "open-tunnel", "--instance-id", w.instanceID, "--max-tunnel-duration", "5")
	cmd := command(t, w.env, argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close() // keeps stdin open: only the duration may end the tunnel
	start := time.Now()
	r := run(t, cmd)
	took := time.Since(start)
	if r.Code == 0 {
		t.Errorf("open-tunnel ended by its duration exited 0: %s", r)
	}
	if !strings.Contains(strings.ToLower(r.Stderr), "duration") {
		t.Errorf("open-tunnel did not print why the tunnel ended: %s", r)
	}
	if took < 4500*time.Millisecond || took > 30*time.Second {
		t.Errorf("a 5 s tunnel ended after %s", took)
	}
	if !strings.HasPrefix(r.Stdout, "SSH-2.0-") {
		t.Errorf("the tunnel carried no data before it ended: stdout %q", r.Stdout)
	}
}

// testPolicyCapsDuration: a user whose policy caps maxTunnelDuration at
// 600 is denied 3,600 and allowed 600.
func (w *eiceWorld) testPolicyCapsDuration(t *testing.T) {
	w.mustPostern(t, "user", "create", "tunneller-"+w.id)
	var key struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey string }
	}
	w.mustPosternJSON(t, &key, "access-key", "create", "--user", "tunneller-"+w.id)
	w.mustPostern(t, "policy", "put", "--user", "tunneller-"+w.id, "--name", "tunnels", "--document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2-instance-connect:OpenTunnel","ec2:Describe*"],"Resource":"*",
		"Condition":{"NumericLessThanEqualsIfExists":{"ec2-instance-connect:maxTunnelDuration":"600"}}}]}`)
	env := map[string]string{}
	for k, v := range w.env {
		env[k] = v
	}
	env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = key.AccessKey.AccessKeyId, key.AccessKey.SecretAccessKey
	argv := w.inClient(posternBin, "open-tunnel", "--instance-id", w.instanceID, "--max-tunnel-duration", "3600")
	cmd := command(t, env, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader("")
	r := run(t, cmd)
	if r.Code == 0 || !strings.Contains(r.Stderr, "AccessDeniedException") {
		t.Errorf("open-tunnel for 3,600 s against a 600 s policy: %s", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := w.dialTunnel(ctx, w.tunnelURL(t, key.AccessKey.AccessKeyId, key.AccessKey.SecretAccessKey, 22, 600))
	if err != nil {
		t.Fatalf("a 600 s tunnel within the policy: %v", err)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// testProcessesShareTheLimit runs a second relay-mode process for the
// endpoint: the 20 tunnels of its limit split between the two, the 21st
// is refused; when one process is killed with SIGKILL its tunnels stop
// counting within the server's bound, and the limit is whole again.
func (w *eiceWorld) testProcessesShareTheLimit(t *testing.T) {
	second := w.startEndpointProc(t, "relay")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	keyID, secret := w.env["AWS_ACCESS_KEY_ID"], w.env["AWS_SECRET_ACCESS_KEY"]
	open := func(what string) (net.Conn, error) {
		c, _, err := w.dialTunnel(ctx, w.tunnelURL(t, keyID, secret, 22, 0))
		if err != nil {
			return nil, err
		}
		nc := websocket.NetConn(ctx, c, websocket.MessageBinary)
		line, err := bufio.NewReader(nc).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			nc.Close()
			return nil, fmt.Errorf("%s: sshd's banner %q, %v", what, line, err)
		}
		return nc, nil
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 20 {
		c, err := open(fmt.Sprintf("tunnel %d of 20", i+1))
		if err != nil {
			t.Fatalf("tunnel %d of 20 across two processes: %v", i+1, err)
		}
		conns = append(conns, c)
	}
	first, other := strings.Count(w.endpoint.Stderr.String(), `msg="tunnel open"`), strings.Count(second.Stderr.String(), `msg="tunnel open"`)
	if first == 0 || other == 0 || first+other < 20 {
		t.Errorf("the 20 tunnels split %d / %d between the processes; want both to carry some", first, other)
	}
	wantTooMany := func(what string) {
		t.Helper()
		_, resp, err := w.dialTunnel(ctx, w.tunnelURL(t, keyID, secret, 22, 0))
		if err == nil {
			t.Fatalf("%s was opened", what)
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(err.Error(), "TooManyTunnels") || !strings.Contains(err.Error(), "20") {
			t.Fatalf("%s: %v; want 429 TooManyTunnels naming the limit of 20", what, err)
		}
	}
	wantTooMany("a 21st tunnel across two processes")

	// The second process dies without a word: its tunnels end, and once
	// the server has not heard from it for its bound they stop counting.
	if err := second.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var c net.Conn
	waitFor(t, "a tunnel in the place of the killed process's", 60*time.Second, func() bool {
		var err error
		c, err = open("a tunnel after the kill")
		return err == nil
	})
	conns = append(conns, c)
	t.Logf("the killed process's %d tunnels stopped counting %s after the kill", other, time.Since(killed).Round(100*time.Millisecond))
	for i := 1; i < other; i++ {
		c, err := open("a tunnel after the kill")
		if err != nil {
			t.Fatalf("tunnel %d of the %d freed by the kill: %v", i+1, other, err)
		}
		conns = append(conns, c)
	}
	wantTooMany("a 21st tunnel after the kill")
}
