package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/coder/websocket"

	"github.com/postern-dev/postern/bench/internal/benchrig"
	"github.com/postern-dev/postern/opentunnel"
	"github.com/postern-dev/postern/tunnel"
)

// Ports in the bench's namespaces.
const (
	endpointPort   = 8443 // postern endpoint run --listen, in the edge
	websockifyPort = 8080 // websockify, in the edge
	tlsRelayPort   = 8444 // the TLS relay child, in the edge
)

// tunnelPolicy lets the bench user open tunnels to the target's port and
// nothing else, so that every open is a real policy decision.
var tunnelPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"Tunnel","Effect":"Allow",` +
	`"Action":"ec2-instance-connect:OpenTunnel","Resource":"arn:aws:ec2:*:*:instance-connect-endpoint/*",` +
	`"Condition":{"NumericEquals":{"ec2-instance-connect:remotePort":"` + strconv.Itoa(targetPort) + `"}}}]}`

// testbed is the whole tunnel installation: the network, `postern
// server` in the root namespace, an Instance Connect Endpoint in the
// edge (started and stopped per stage), the target in the private
// namespace, and the peers: an sshd bastion and websockify in the edge.
type testbed struct {
	cfg   config
	dir   string // everything the run writes; removed at the end
	net   *network
	procs benchrig.Procs
	srv   *benchrig.Server

	endpointID     string
	credentialFile string
	creds          aws.CredentialsProvider // the tunnel user's
	tls            *tls.Config             // trusts the server's CA (the endpoint's certificate too)

	bastionKey, bastionKnownHosts string
	websockifyTLS                 *tls.Config
	tlsRelayTLS                   *tls.Config
	websockifyVersion             string
	websockifyInstalled           bool   // by this run
	rlimit                        uint64 // RLIMIT_NOFILE of the bench and its children
	rlimitRaised                  bool   // to what the tunnels need; else the hard limit holds fewer
}

// fileMargin is the open files a process needs besides its tunnels'.
const fileMargin = 100

// maxTunnels is how many tunnels the open-files limit lets the endpoint
// hold: each takes a socket to the client and one to the target.
func (b *testbed) maxTunnels() int { return int((b.rlimit - fileMargin) / 2) }

// config says what the testbed runs.
type config struct {
	Postern    string
	MaxTunnels int // the endpoint's connection limit
}

func startTestbed(ctx context.Context, cfg config) (_ *testbed, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the tunnel benchmarks build network namespaces and run sshd and must run as root (make bench uses sudo)")
	}
	bin, err := filepath.Abs(cfg.Postern)
	if err != nil {
		return nil, err
	}
	cfg.Postern = bin
	for _, tool := range []string{"ip", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (apt-get install iproute2 openssh-client)", tool)
		}
	}
	if _, err := os.Stat(benchrig.SSHDPath()); err != nil {
		return nil, errors.New("sshd is not installed (apt-get install openssh-server)")
	}
	b := &testbed{cfg: cfg}
	if b.websockifyInstalled, err = ensureWebsockify(ctx); err != nil {
		return nil, err
	}
	b.websockifyVersion = packageVersion("websockify")
	if b.rlimit, b.rlimitRaised, err = raiseFileLimit(uint64(cfg.MaxTunnels)*2 + fileMargin); err != nil {
		return nil, err
	}
	if b.dir, err = os.MkdirTemp("", "postern-bench-tunnels-"); err != nil {
		return nil, err
	}
	b.procs.Dir = b.dir
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	if b.net, err = newNetwork(); err != nil {
		return nil, err
	}
	if b.srv, err = benchrig.StartServer(ctx, &b.procs, benchrig.ServerConfig{Postern: cfg.Postern, Dir: b.dir, Listen: b.net.rootIP + ":0"}); err != nil {
		return nil, err
	}
	if b.tls, err = b.srv.TLSConfig(); err != nil {
		return nil, err
	}
	if err := b.declare(ctx); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	target := net.JoinHostPort(b.net.targetIP, strconv.Itoa(targetPort))
	if _, err := b.procs.Spawn("target", nil, "ip", in(b.net.privNS, self, targetChildArg, "-listen", target)[1:]...); err != nil {
		return nil, err
	}
	if err := b.startBastion(); err != nil {
		return nil, err
	}
	if err := b.startWebsockify(); err != nil {
		return nil, err
	}
	if err := b.startTLSRelay(self, target); err != nil {
		return nil, err
	}
	// Everything answers before the first figure.
	for _, addr := range []string{target, b.net.edgeIP + ":22", net.JoinHostPort(b.net.edgeIP, strconv.Itoa(websockifyPort)),
		net.JoinHostPort(b.net.edgeIP, strconv.Itoa(tlsRelayPort))} {
		if err := b.waitTCP(ctx, addr); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// declare creates the VPC, the subnet, the endpoint (its credential goes
// to a 0600 file) and the IAM user whose key signs the tunnels.
func (b *testbed) declare(ctx context.Context) error {
	var vpc struct{ Vpc struct{ VpcId string } }
	if err := b.posternJSON(ctx, &vpc, "vpc", "create", "--cidr", b.net.vpcCIDR, "--tag", "Name=bench"); err != nil {
		return err
	}
	var sn struct{ Subnet struct{ SubnetId string } }
	if err := b.posternJSON(ctx, &sn, "subnet", "create", "--vpc-id", vpc.Vpc.VpcId, "--cidr", b.net.subnet); err != nil {
		return err
	}
	var created struct {
		InstanceConnectEndpoint struct{ InstanceConnectEndpointId string }
		JoinCredential          string
	}
	if err := b.posternJSON(ctx, &created, "endpoint", "create", "--subnet-id", sn.Subnet.SubnetId,
		"--port", strconv.Itoa(targetPort), "--max-connections", strconv.Itoa(b.cfg.MaxTunnels), "--tag", "Name=bench-edge"); err != nil {
		return err
	}
	b.endpointID = created.InstanceConnectEndpoint.InstanceConnectEndpointId
	if b.endpointID == "" || created.JoinCredential == "" {
		return fmt.Errorf("endpoint create printed no endpoint id or credential")
	}
	b.credentialFile = filepath.Join(b.dir, "endpoint.credential")
	if err := os.WriteFile(b.credentialFile, []byte(created.JoinCredential+"\n"), 0o600); err != nil {
		return err
	}
	id, secret, err := b.srv.CreateUser(ctx, "tunneller", "tunnels", tunnelPolicy)
	if err != nil {
		return err
	}
	b.creds = credentials.NewStaticCredentialsProvider(id, secret, "")
	return nil
}

// posternJSON runs a postern client command as the admin with --output
// json and decodes what it prints.
func (b *testbed) posternJSON(ctx context.Context, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, b.cfg.Postern, append(args, "--output", "json")...)
	cmd.Env = b.srv.Env
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("postern %s: %v: %s", strings.Join(args, " "), err, benchrig.ExitText(err))
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("postern %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// startEndpoint runs `postern endpoint run` in the edge namespace (with
// one more environment variable when env is set) and waits until the
// server shows it joined where mode puts it (and, in listen mode, its
// listener answers).
func (b *testbed) startEndpoint(ctx context.Context, mode, env string) (*benchrig.Child, string, error) {
	args := []string{b.cfg.Postern, "endpoint", "run", "--server", b.srv.Info.URL, "--credential-file", b.credentialFile,
		"--ca-bundle", b.srv.Info.CABundle, "--mode", mode, "--log-level", "warn", "--grace", "5s"}
	dnsName := strings.TrimPrefix(b.srv.Info.URL, "https://")
	if mode == "listen" {
		dnsName = net.JoinHostPort(b.net.edgeIP, strconv.Itoa(endpointPort))
		args = append(args, "--listen", dnsName)
	}
	argv := in(b.net.edgeNS, args...)
	var environ []string
	if env != "" {
		environ = append(os.Environ(), env)
	}
	c, err := b.procs.Spawn("endpoint-"+mode, environ, argv[0], argv[1:]...)
	if err != nil {
		return nil, "", err
	}
	ec := ec2.NewFromConfig(b.srv.Admin)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: []string{b.endpointID}})
		if err == nil && len(out.InstanceConnectEndpoints) == 1 && string(out.InstanceConnectEndpoints[0].State) == "create-complete" &&
			aws.ToString(out.InstanceConnectEndpoints[0].DnsName) == dnsName {
			break
		}
		if c.Exited() {
			return nil, "", fmt.Errorf("postern endpoint run --mode %s exited: %s", mode, c.Tail())
		}
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("the %s-mode endpoint did not join in 30s: %v\n%s", mode, err, c.Tail())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, "", err
		}
	}
	if mode == "listen" {
		if err := b.waitTCP(ctx, dnsName); err != nil {
			return nil, "", err
		}
	}
	return c, dnsName, nil
}

// endpointPID is the endpoint process's id: `ip netns exec` execs the
// command in place, so it is the child's own; checked, since an RSS of
// the wrong process would be a wrong figure.
func endpointPID(c *benchrig.Child) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.Pid()))
	if err != nil {
		return 0, err
	}
	if comm := strings.TrimSpace(string(b)); comm != "postern" {
		return 0, fmt.Errorf("process %d is %q, not the postern endpoint", c.Pid(), comm)
	}
	return c.Pid(), nil
}

// presign signs an OpenTunnel URL to the target for the endpoint at
// dnsName, as the bench user.
func (b *testbed) presign(ctx context.Context, dnsName string) (string, error) {
	return opentunnel.Presign(ctx, b.creds, b.srv.Info.Region, dnsName, opentunnel.Params{
		EndpointID: b.endpointID, PrivateIP: b.net.targetIP, RemotePort: targetPort})
}

// openTunnel presigns and opens a tunnel, as `postern open-tunnel` does.
func (b *testbed) openTunnel(ctx context.Context, dnsName string) (*tunnel.WebSocket, error) {
	u, err := b.presign(ctx, dnsName)
	if err != nil {
		return nil, err
	}
	return opentunnel.Dial(ctx, u, b.tls)
}

// wsStream is a WebSocket carrying a byte stream in binary frames.
type wsStream struct {
	net.Conn
	cancel context.CancelFunc
}

func (s *wsStream) Close() error {
	err := s.Conn.Close()
	s.cancel()
	return err
}

func newWSStream(c *websocket.Conn) *wsStream {
	ctx, cancel := context.WithCancel(context.Background())
	return &wsStream{Conn: websocket.NetConn(ctx, c, websocket.MessageBinary), cancel: cancel}
}

// The four ways to the target. Each returns once the target's greeting
// has arrived.

func (b *testbed) directStream(ctx context.Context) (stream, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(b.net.targetIP, strconv.Itoa(targetPort)))
	if err != nil {
		return nil, err
	}
	return c, ready(c)
}

func (b *testbed) tunnelStream(ctx context.Context, dnsName string) (stream, error) {
	ws, err := b.openTunnel(ctx, dnsName)
	if err != nil {
		return nil, err
	}
	s := newWSStream(ws.Conn())
	return s, ready(s)
}

func (b *testbed) tlsRelayStream(ctx context.Context) (stream, error) {
	d := tls.Dialer{Config: b.tlsRelayTLS}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(b.net.edgeIP, strconv.Itoa(tlsRelayPort)))
	if err != nil {
		return nil, fmt.Errorf("tls relay: %w", err)
	}
	return c, ready(c)
}

func (b *testbed) websockifyStream(ctx context.Context) (stream, error) {
	c, _, err := websocket.Dial(ctx, "wss://"+net.JoinHostPort(b.net.edgeIP, strconv.Itoa(websockifyPort))+"/", &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: b.websockifyTLS}}, Subprotocols: []string{"binary"}, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, fmt.Errorf("websockify: %w", err)
	}
	c.SetReadLimit(-1)
	s := newWSStream(c)
	return s, ready(s)
}

func (b *testbed) sshStream(ctx context.Context) (stream, error) {
	s, err := startCmdStream(b.sshArgv(), b.srv.Env)
	if err != nil {
		return nil, err
	}
	// The process outlives ctx, which bounds only the wait for the
	// greeting.
	stop := context.AfterFunc(ctx, func() { s.Close() })
	err = ready(s)
	stop()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("ssh -W: %w", err)
	}
	return s, nil
}

// sshCipher is the bastion connection's cipher: AES-128-GCM, as the
// tunnel's TLS 1.3 negotiates, rather than OpenSSH's default
// chacha20-poly1305, which is slower on CPUs with AES instructions.
const sshCipher = "aes128-gcm@openssh.com"

// sshArgv is the forwarding ProxyJump sets up: `ssh -W TARGET:PORT
// BASTION`, the client's stdin and stdout carried to the target.
func (b *testbed) sshArgv() []string {
	return []string{"ssh", "-F", "/dev/null", "-i", b.bastionKey, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + b.bastionKnownHosts, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-c", sshCipher, "-W", net.JoinHostPort(b.net.targetIP, strconv.Itoa(targetPort)), "root@" + b.net.edgeIP}
}

// startBastion runs sshd in the edge namespace, where a bastion host
// stands, with a key of the run's own for root.
func (b *testbed) startBastion() error {
	dir := filepath.Join(b.dir, "bastion")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	b.bastionKey = filepath.Join(dir, "id_ed25519")
	for _, k := range []string{hostKey, b.bastionKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		return err
	}
	f := strings.Fields(string(hostPub))
	b.bastionKnownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(b.bastionKnownHosts, fmt.Appendf(nil, "%s %s %s\n", b.net.edgeIP, f[0], f[1]), 0o600); err != nil {
		return err
	}
	userPub, err := os.ReadFile(b.bastionKey + ".pub")
	if err != nil {
		return err
	}
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, userPub, 0o600); err != nil {
		return err
	}
	conf := filepath.Join(dir, "sshd_config")
	// StrictModes off: the run's directory lies under the world-writable
	// temporary directory.
	if err := os.WriteFile(conf, fmt.Appendf(nil, `Port 22
ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
`, b.net.edgeIP, hostKey, filepath.Join(dir, "sshd.pid"), keys), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	argv := in(b.net.edgeNS, benchrig.SSHDPath(), "-D", "-e", "-f", conf)
	_, err = b.procs.Spawn("bastion-sshd", nil, argv[0], argv[1:]...)
	return err
}

// startWebsockify runs websockify in the edge namespace with TLS (a
// certificate of the run's own), proxying to the target.
func (b *testbed) startWebsockify() error {
	cert, key, cfg, err := b.edgeCertificate("websockify")
	if err != nil {
		return err
	}
	b.websockifyTLS = cfg
	argv := in(b.net.edgeNS, "websockify", "--cert", cert, "--key", key, "--ssl-only",
		net.JoinHostPort(b.net.edgeIP, strconv.Itoa(websockifyPort)), net.JoinHostPort(b.net.targetIP, strconv.Itoa(targetPort)))
	_, err = b.procs.Spawn("websockify", nil, argv[0], argv[1:]...)
	return err
}

// startTLSRelay starts the TLS relay child in the edge, relaying to target.
func (b *testbed) startTLSRelay(self, target string) error {
	cert, key, cfg, err := b.edgeCertificate("tls-relay")
	if err != nil {
		return err
	}
	b.tlsRelayTLS = cfg
	argv := in(b.net.edgeNS, self, tlsRelayChildArg, "-listen", net.JoinHostPort(b.net.edgeIP, strconv.Itoa(tlsRelayPort)),
		"-to", target, "-cert", cert, "-key", key)
	_, err = b.procs.Spawn("tls-relay", nil, argv[0], argv[1:]...)
	return err
}

// edgeCertificate writes a self-signed certificate for the edge's address
// and its key to files under name, and returns their paths and a client
// configuration that trusts it.
func (b *testbed) edgeCertificate(name string) (cert, key string, cfg *tls.Config, err error) {
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", nil, err
	}
	certPEM, keyPEM, err := selfSigned(b.net.edgeIP)
	if err != nil {
		return "", "", nil, err
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		return "", "", nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return cert, key, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// selfSigned makes a P-256 certificate for one IP address.
func selfSigned(ip string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench websockify"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{addr.AsSlice()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// waitTCP waits until addr accepts a connection, or a child dies.
func (b *testbed) waitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p := b.procs.FirstExited(); p != nil {
			return fmt.Errorf("%s exited: %s", p.Name, p.Tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing answers on %s after 30s: %v", addr, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// stop ends the children, removes the network and the run's directory.
func (b *testbed) stop() {
	b.procs.StopAll()
	if b.net != nil {
		b.net.teardown()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// describe tells a person how to reach the testbed (-hold).
func (b *testbed) describe(w io.Writer, dnsName string) {
	fmt.Fprintf(w, "endpoint %s listening on %s; target %s:%d in namespace %s; bastion and websockify in %s\n",
		b.endpointID, dnsName, b.net.targetIP, targetPort, b.net.privNS, b.net.edgeNS)
	for _, p := range b.procs.All() {
		fmt.Fprintf(w, "%s: pid %d, log %s\n", p.Name, p.Pid(), p.Log)
	}
	fmt.Fprintln(w, "environment for postern and AWS tools (as the admin):")
	for _, kv := range b.srv.Env[1:] {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	fmt.Fprintln(w, "waiting for Ctrl-C")
}
