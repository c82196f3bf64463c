package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/postern-dev/postern/opentunnel/opentunneltest"
)

const (
	tunnelKeyID  = "AKIAIOSFODNN7EXAMPLE"
	tunnelSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tunnelRegion = "eu-west-1"
	tunnelEICE   = "eice-0123456789abcdef0"
)

// waitBuffer collects output and lets a test wait for a piece of it.
type waitBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

func newWaitBuffer() *waitBuffer { return &waitBuffer{changed: make(chan struct{})} }

func (w *waitBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

func (w *waitBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitFor returns the output once it matches re, failing the test after a
// while.
func (w *waitBuffer) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		m := re.FindStringSubmatch(w.b.String())
		changed := w.changed
		w.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("the output never matched %s: %q", re, w.String())
		}
	}
}

// tunnelEnv points the AWS_* environment at nothing in particular (open-
// tunnel with everything resolved makes no API call) and trusts e's CA.
func tunnelEnv(t *testing.T, e *opentunneltest.Endpoint) {
	t.Helper()
	isolateAWS(t)
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, e.CABundle, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", tunnelKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", tunnelSecret)
	t.Setenv("AWS_REGION", tunnelRegion)
	t.Setenv("AWS_ENDPOINT_URL", "https://127.0.0.1:1")
	t.Setenv("AWS_CA_BUNDLE", bundle)
}

func resolvedTunnelArgs(e *opentunneltest.Endpoint, extra ...string) []string {
	return append([]string{"open-tunnel", "--private-ip-address", "10.0.0.5", "--instance-connect-endpoint-id", tunnelEICE,
		"--instance-connect-endpoint-dns-name", e.DNSName}, extra...)
}

// TestOpenTunnelStdio relays standard input and output through an
// endpoint whose certificate only AWS_CA_BUNDLE trusts.
func TestOpenTunnelStdio(t *testing.T) {
	e := opentunneltest.NewEndpoint(t, tunnelKeyID, tunnelSecret, tunnelRegion)
	tunnelEnv(t, e)
	inR, inW := io.Pipe()
	out, errOut := newWaitBuffer(), newWaitBuffer()
	m := &Main{Stdin: inR, Stdout: out, Stderr: errOut, Getenv: os.Getenv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- m.Run(ctx, resolvedTunnelArgs(e, "--remote-port", "3389", "--max-tunnel-duration", "600"))
	}()
	io.WriteString(inW, "hello through the tunnel\n")
	out.waitFor(t, regexp.MustCompile("hello through the tunnel\n"))
	inW.Close()
	if c := <-code; c != 0 {
		t.Fatalf("open-tunnel: exit %d: %s", c, errOut)
	}
	e.Check(t)
	q := e.Queries()
	if len(q) != 1 || q[0].Get("remotePort") != "3389" || q[0].Get("maxTunnelDuration") != "600" ||
		q[0].Get("privateIpAddress") != "10.0.0.5" || q[0].Get("instanceConnectEndpointId") != tunnelEICE {
		t.Errorf("the endpoint saw %v", q)
	}
}

// TestOpenTunnelLocalPort listens, prints the port, and tunnels each
// connection.
func TestOpenTunnelLocalPort(t *testing.T) {
	e := opentunneltest.NewEndpoint(t, tunnelKeyID, tunnelSecret, tunnelRegion)
	tunnelEnv(t, e)
	out, errOut := newWaitBuffer(), newWaitBuffer()
	m := &Main{Stdin: strings.NewReader(""), Stdout: out, Stderr: errOut, Getenv: os.Getenv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- m.Run(ctx, resolvedTunnelArgs(e, "--local-port", "0", "--max-websocket-connections", "2"))
	}()
	port := out.waitFor(t, regexp.MustCompile(`Listening for connections on 127\.0\.0\.1:(\d+)`))[1]
	for i := range 2 {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("connection %d", i)
		io.WriteString(c, msg)
		b := make([]byte, len(msg))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
			t.Fatalf("echo through the listener: %q, %v", b, err)
		}
		c.Close()
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("open-tunnel --local-port: exit %d: %s", c, errOut)
	}
	e.Check(t)
	if n := len(e.Queries()); n != 2 {
		t.Errorf("%d handshakes for 2 connections", n)
	}
	if !strings.Contains(errOut.String(), "[2] Accepted") {
		t.Errorf("no connection messages on stderr: %q", errOut)
	}
}

func TestOpenTunnelRefused(t *testing.T) {
	e := opentunneltest.NewEndpoint(t, tunnelKeyID, tunnelSecret, tunnelRegion)
	e.Refuse = &opentunneltest.Refusal{Status: 403, Code: "AccessDeniedException", Message: "not authorized to perform ec2-instance-connect:OpenTunnel", RequestID: "req-7"}
	tunnelEnv(t, e)
	var out, errOut syncBuffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: os.Getenv}
	if c := m.Run(context.Background(), resolvedTunnelArgs(e)); c != 1 {
		t.Fatalf("exit %d, want 1", c)
	}
	msg := errOut.String()
	for _, want := range []string{"AccessDeniedException: not authorized to perform ec2-instance-connect:OpenTunnel", "HTTP 403", "req-7"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "Signature") || strings.Contains(msg, tunnelKeyID) {
		t.Errorf("stderr quotes the presigned URL: %q", msg)
	}
}

func TestOpenTunnelUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "give --instance-id or --private-ip-address"},
		{[]string{"--private-ip-address", "10.0.0.5"}, "--private-ip-address needs --instance-connect-endpoint-id"},
		{[]string{"--instance-id", "i-0a", "--instance-connect-endpoint-dns-name", "h"}, "--instance-connect-endpoint-dns-name needs --instance-connect-endpoint-id"},
		{[]string{"--instance-id", "i-0a", "--max-tunnel-duration", "0"}, "--max-tunnel-duration must be 1 to 3600"},
		{[]string{"--instance-id", "i-0a", "--max-tunnel-duration", "3601"}, "--max-tunnel-duration must be 1 to 3600"},
		{[]string{"--instance-id", "i-0a", "--remote-port", "0"}, "--remote-port must be 1 to 65535"},
		{[]string{"--instance-id", "i-0a", "--local-port", "2222", "--max-websocket-connections", "0"}, "--max-websocket-connections must be at least 1"},
		{[]string{"--instance-id", "i-0a", "extra"}, "unexpected argument"},
	} {
		var out, errOut syncBuffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: os.Getenv}
		if c := m.Run(context.Background(), append([]string{"open-tunnel"}, tc.args...)); c != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("open-tunnel %v: exit %d, %q; want exit 2 saying %q", tc.args, c, errOut.String(), tc.want)
		}
	}
	if f, err := os.Open(os.DevNull); err == nil {
		defer f.Close()
		if isTerminal(f) {
			t.Errorf("%s is taken for a terminal", os.DevNull)
		}
	}
}

func TestParseEICEOptions(t *testing.T) {
	for in, want := range map[string]eiceOptions{
		"":                                  {},
		"endpointId=eice-0a":                {EndpointID: "eice-0a"},
		"endpointId=eice-0a,dnsName=h:8443": {EndpointID: "eice-0a", DNSName: "h:8443"},
		"maxTunnelDuration=900":             {MaxTunnelDuration: 900},
		`{"endpointId":"eice-0a","maxTunnelDuration":60}`: {EndpointID: "eice-0a", MaxTunnelDuration: 60},
	} {
		got, err := parseEICEOptions(in)
		if err != nil || got != want {
			t.Errorf("parseEICEOptions(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"dnsName=h", "endpointId=vpc-1", "maxTunnelDuration=0", "maxTunnelDuration=3601",
		"maxTunnelDuration=x", "color=blue", "endpointId", `{"endpointID":"eice-0a","x":1}`, `{"maxTunnelDuration":0}`} {
		if got, err := parseEICEOptions(in); err == nil {
			t.Errorf("parseEICEOptions(%q) = %+v, want an error", in, got)
		}
	}
}

// TestProxyCommand: the ProxyCommand ssh gets survives ssh's %-expansion
// and the shell, whatever the binary's path.
func TestProxyCommand(t *testing.T) {
	r := &tunnelRoute{MaxTunnelDuration: 900}
	r.Instance.ID, r.Instance.PrivateIP = "i-0123456789abcdef0", "10.0.0.5"
	r.Endpoint.ID, r.Endpoint.DNSName = tunnelEICE, "endpoint.example.test:8443"
	self := "/opt/my tools/it's 100%/postern"
	cmd := r.proxyCommand(self, 2222)
	// ssh turns %% into %, then runs the command with the shell.
	expanded := strings.ReplaceAll(cmd, "%%", "%")
	out, err := exec.Command("/bin/sh", "-c", `printf '%s\n' `+expanded).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	want := []string{self, "open-tunnel", "--instance-id", "i-0123456789abcdef0", "--private-ip-address", "10.0.0.5",
		"--remote-port", "2222", "--instance-connect-endpoint-id", tunnelEICE,
		"--instance-connect-endpoint-dns-name", "endpoint.example.test:8443", "--max-tunnel-duration", "900"}
	if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ProxyCommand %q runs %q, want %q", cmd, got, want)
	}
}

// fakeEC2Endpoints answers DescribeInstanceConnectEndpoints with eps
// (id, vpc, subnet, state, dns), filtered by vpc-id, and counts calls.
func fakeEC2Endpoints(t *testing.T, eps [][5]string) (aws.Config, *int) {
	t.Helper()
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		calls++
		mu.Unlock()
		if r.Form.Get("Action") != "DescribeInstanceConnectEndpoints" {
			http.Error(w, "unexpected "+r.Form.Get("Action"), 400)
			return
		}
		var items strings.Builder
		for _, e := range eps {
			vpcOK := true
			for i := 1; r.Form.Has(fmt.Sprintf("Filter.%d.Name", i)); i++ {
				if r.Form.Get(fmt.Sprintf("Filter.%d.Name", i)) == "vpc-id" {
					vpcOK = r.Form.Get(fmt.Sprintf("Filter.%d.Value.1", i)) == e[1]
				}
			}
			if id := r.Form.Get("InstanceConnectEndpointId.1"); (id != "" && id != e[0]) || !vpcOK {
				continue
			}
			fmt.Fprintf(&items, "<item><instanceConnectEndpointId>%s</instanceConnectEndpointId><vpcId>%s</vpcId><subnetId>%s</subnetId><state>%s</state><dnsName>%s</dnsName></item>", e[0], e[1], e[2], e[3], e[4])
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<DescribeInstanceConnectEndpointsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-1</requestId><instanceConnectEndpointSet>%s</instanceConnectEndpointSet></DescribeInstanceConnectEndpointsResponse>`, items.String())
	}))
	t.Cleanup(srv.Close)
	return aws.Config{
		Region: tunnelRegion, BaseEndpoint: aws.String(srv.URL), HTTPClient: srv.Client(), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(tunnelKeyID, tunnelSecret, ""),
	}, &calls
}

func TestChooseRoute(t *testing.T) {
	ctx := context.Background()
	cfg, calls := fakeEC2Endpoints(t, [][5]string{
		{"eice-00000000000000001", "vpc-1", "subnet-1", "create-complete", "ep1.example.test"},
		{"eice-00000000000000002", "vpc-1", "subnet-2", "create-complete", "ep2.example.test"},
		{"eice-00000000000000003", "vpc-2", "subnet-3", "create-in-progress", ""},
	})
	public := &connectInfo{InstanceId: "i-0a", PublicIpAddress: "203.0.113.5", PrivateIpAddress: "10.0.2.5", VpcId: "vpc-1", SubnetId: "subnet-2"}
	private := &connectInfo{InstanceId: "i-0b", PrivateIpAddress: "10.0.2.6", VpcId: "vpc-1", SubnetId: "subnet-2"}
	lonely := &connectInfo{InstanceId: "i-0c", PrivateIpAddress: "10.9.0.6", VpcId: "vpc-2", SubnetId: "subnet-3"}

	for _, tc := range []struct {
		name     string
		info     *connectInfo
		connType string
		eice     eiceOptions
		addr     string
		endpoint string // "" for direct
		err      string
	}{
		{name: "auto public", info: public, connType: "auto", addr: "203.0.113.5"},
		{name: "auto private", info: private, connType: "auto", addr: "10.0.2.6", endpoint: "eice-00000000000000002"},
		{name: "auto without endpoint", info: lonely, connType: "auto", addr: "10.9.0.6"},
		{name: "direct private", info: private, connType: "direct", addr: "10.0.2.6"},
		{name: "eice public", info: public, connType: "eice", addr: "10.0.2.5", endpoint: "eice-00000000000000002"},
		{name: "eice by id", info: private, connType: "eice", eice: eiceOptions{EndpointID: "eice-00000000000000001"}, addr: "10.0.2.6", endpoint: "eice-00000000000000001"},
		{name: "options imply eice", info: public, connType: "auto", eice: eiceOptions{MaxTunnelDuration: 60}, addr: "10.0.2.5", endpoint: "eice-00000000000000002"},
		{name: "eice without endpoint", info: lonely, connType: "eice", err: "no Instance Connect Endpoint is available in vpc-2"},
		{name: "direct with options", info: private, connType: "direct", eice: eiceOptions{MaxTunnelDuration: 60}, err: "cannot be used with --connection-type direct"},
		{name: "bad type", info: private, connType: "ssm", err: "must be auto, direct or eice"},
	} {
		r, err := chooseRoute(ctx, cfg, tc.info, tc.connType, tc.eice)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: chooseRoute = %+v, %v; want an error saying %q", tc.name, r, err, tc.err)
			}
			continue
		}
		ep := ""
		if r.tunnel != nil {
			ep = r.tunnel.Endpoint.ID
		}
		if err != nil || r.addr != tc.addr || ep != tc.endpoint {
			t.Errorf("%s: chooseRoute = %s via %q, %v; want %s via %q", tc.name, r.addr, ep, err, tc.addr, tc.endpoint)
		}
	}

	// A given DNS name needs no lookup.
	before := *calls
	r, err := chooseRoute(ctx, cfg, private, "eice", eiceOptions{EndpointID: "eice-00000000000000009", DNSName: "given.example.test"})
	if err != nil || r.tunnel == nil || r.tunnel.Endpoint.DNSName != "given.example.test" || *calls != before {
		t.Errorf("chooseRoute with dnsName = %+v, %v after %d calls", r, err, *calls-before)
	}
}
