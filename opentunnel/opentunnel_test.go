package opentunnel

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/endpointproto"
)

// requestFor turns a presigned URL into the request an endpoint receives.
func requestFor(t *testing.T, rawURL string) *http.Request {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequest(http.MethodGet, "https://"+u.Host+u.RequestURI(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = u.RequestURI()
	r.Host = u.Host
	return r
}

func TestPresign(t *testing.T) {
	ctx := context.Background()
	p := Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22, MaxTunnelDuration: 600}
	for _, tc := range []struct{ dnsName, token string }{
		{"eice-0123456789abcdef0.abcd.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com", ""},
		{"endpoint.example.test:8443", "session/token+=="},
		{"10.1.2.3:443", ""},
		{"[fd00::1]:9443", ""},
	} {
		raw, err := Presign(ctx, testCreds(tc.token), testRegion, tc.dnsName, p)
		if err != nil {
			t.Fatalf("Presign(%s): %v", tc.dnsName, err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if u.Scheme != "wss" || u.Host != tc.dnsName || u.Path != endpointproto.OpenTunnelPath {
			t.Errorf("Presign(%s) = %s://%s%s", tc.dnsName, u.Scheme, u.Host, u.Path)
		}
		q := u.Query()
		want := map[string]string{
			endpointproto.ParamEndpointID: testEIC, endpointproto.ParamPrivateIPAddress: "10.0.0.5",
			endpointproto.ParamRemotePort: "22", endpointproto.ParamMaxTunnelDuration: "600",
			"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Expires": "60", "X-Amz-SignedHeaders": "host",
			"X-Amz-Security-Token": tc.token,
		}
		for k, v := range want {
			if q.Get(k) != v {
				t.Errorf("Presign(%s): %s = %q, want %q", tc.dnsName, k, q.Get(k), v)
			}
		}
		if c := q.Get("X-Amz-Credential"); !strings.HasPrefix(c, testAKID+"/") || !strings.HasSuffix(c, "/"+testRegion+"/ec2-instance-connect/aws4_request") {
			t.Errorf("Presign(%s): X-Amz-Credential = %q", tc.dnsName, c)
		}
		if _, err := verifyTunnelRequest(ctx, requestFor(t, raw)); err != nil {
			t.Errorf("the project's verifier refuses Presign(%s): %v", tc.dnsName, err)
		}
		// The signature covers the host and the parameters.
		other := requestFor(t, raw)
		other.Host = "elsewhere.example.test"
		if _, err := verifyTunnelRequest(ctx, other); err == nil {
			t.Errorf("Presign(%s): the URL verifies for another host", tc.dnsName)
		}
		other = requestFor(t, strings.Replace(raw, "remotePort=22", "remotePort=3389", 1))
		if _, err := verifyTunnelRequest(ctx, other); err == nil {
			t.Errorf("Presign(%s): the URL verifies with another port", tc.dnsName)
		}
	}

	// Without maxTunnelDuration the parameter is left out.
	raw, err := Presign(ctx, testCreds(""), testRegion, "h.example.test", Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 3389})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, endpointproto.ParamMaxTunnelDuration) {
		t.Errorf("Presign without a duration: %s", Redact(raw))
	}
}

func TestPresignRefuses(t *testing.T) {
	ctx := context.Background()
	good := Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22}
	for name, tc := range map[string]struct {
		dnsName string
		p       Params
	}{
		"no dns name":     {"", good},
		"path in name":    {"h.example.test/x", good},
		"query in name":   {"h.example.test?a=b", good},
		"user in name":    {"u@h.example.test", good},
		"no endpoint":     {"h", Params{PrivateIP: "10.0.0.5", RemotePort: 22}},
		"no address":      {"h", Params{EndpointID: testEIC, RemotePort: 22}},
		"port 0":          {"h", Params{EndpointID: testEIC, PrivateIP: "10.0.0.5"}},
		"port too big":    {"h", Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 70000}},
		"duration 3601 s": {"h", Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22, MaxTunnelDuration: 3601}},
	} {
		if u, err := Presign(ctx, testCreds(""), testRegion, tc.dnsName, tc.p); err == nil {
			t.Errorf("%s: Presign = %s, want an error", name, Redact(u))
		}
	}
}

func TestRedact(t *testing.T) {
	raw, err := Presign(context.Background(), testCreds("tok"), testRegion, "h.example.test:8443", Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22})
	if err != nil {
		t.Fatal(err)
	}
	if got := Redact(raw); got != "wss://h.example.test:8443/openTunnel" {
		t.Errorf("Redact = %q", got)
	}
}

// TestBotocorePresign signs with botocore exactly as the AWS CLI's
// open-tunnel does (testdata/presign_botocore.py), checks that the
// project's verifier accepts it, and that Presign, at the same second,
// produces the same signature.
func TestBotocorePresign(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is not installed")
	}
	ctx := context.Background()
	home := t.TempDir()
	for _, tc := range []struct {
		dnsName, token string
		p              Params
	}{
		{"eice-0123456789abcdef0.abcd.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com", "",
			Params{EndpointID: testEIC, PrivateIP: "10.0.0.5", RemotePort: 22}},
		{"127.0.0.1:8443", "session/token+==",
			Params{EndpointID: testEIC, PrivateIP: "172.16.3.4", RemotePort: 3389, MaxTunnelDuration: 900}},
	} {
		in, _ := json.Marshal(map[string]any{
			"accessKeyId": testAKID, "secretAccessKey": testSecret, "sessionToken": tc.token, "region": testRegion,
			"dnsName": tc.dnsName, "endpointId": tc.p.EndpointID, "remotePort": tc.p.RemotePort,
			"privateIpAddress": tc.p.PrivateIP, "maxTunnelDuration": tc.p.MaxTunnelDuration,
		})
		cmd := exec.Command(py, "testdata/presign_botocore.py")
		cmd.Stdin = strings.NewReader(string(in))
		// No user configuration may change how botocore signs.
		cmd.Env = append(withoutAWS(os.Environ()), "AWS_CONFIG_FILE="+home+"/config", "AWS_SHARED_CREDENTIALS_FILE="+home+"/credentials")
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("botocore presign: %v\n%s", err, stderr)
		}
		botoURL := strings.TrimSpace(string(out))
		if _, err := verifyTunnelRequest(ctx, requestFor(t, botoURL)); err != nil {
			t.Errorf("the project's verifier refuses botocore's URL for %s: %v", tc.dnsName, err)
		}
		bq := mustQuery(t, botoURL)
		at, err := time.Parse("20060102T150405Z", bq.Get("X-Amz-Date"))
		if err != nil {
			t.Fatalf("botocore's X-Amz-Date %q: %v", bq.Get("X-Amz-Date"), err)
		}
		ours, err := presign(ctx, testCreds(tc.token), testRegion, tc.dnsName, tc.p, at)
		if err != nil {
			t.Fatal(err)
		}
		oq := mustQuery(t, ours)
		if len(oq) != len(bq) {
			t.Errorf("%s: Presign's parameters %v, botocore's %v", tc.dnsName, keys(oq), keys(bq))
		}
		for k := range bq {
			if oq.Get(k) != bq.Get(k) {
				t.Errorf("%s: %s is %q from Presign, %q from botocore", tc.dnsName, k, oq.Get(k), bq.Get(k))
			}
		}
	}
}

// withoutAWS drops the AWS_* variables from an environment.
func withoutAWS(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return out
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func keys(q url.Values) []string {
	var ks []string
	for k := range q {
		ks = append(ks, k)
	}
	return ks
}
