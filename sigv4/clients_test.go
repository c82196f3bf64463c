package sigv4

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// verifyingServer verifies every request it receives with the real clock
// and records the outcome; it answers with minimal valid responses.
type verifyingServer struct {
	*httptest.Server
	mu      sync.Mutex
	results []*Result
	errs    []error
}

func newVerifyingServer(t *testing.T, keys map[string]string) *verifyingServer {
	t.Helper()
	l := &staticLookup{keys: keys}
	v := NewVerifier(l.lookup)
	s := &verifyingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		res, err := v.Verify(r.Context(), r, body)
		s.mu.Lock()
		s.results, s.errs = append(s.results, res), append(s.errs, err)
		s.mu.Unlock()
		if err != nil {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"__type":"InvalidSignatureException","Message":"signature"}`)
			return
		}
		if r.Header.Get("X-Amz-Target") != "" {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			io.WriteString(w, `{"RequestId":"r-1","Success":true}`)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, `<ListUsersResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListUsersResult><Users/><IsTruncated>false</IsTruncated></ListUsersResult><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></ListUsersResponse>`)
	}))
	t.Cleanup(s.Close)
	return s
}

// only returns the one verification the server made.
func (s *verifyingServer) only(t *testing.T) *Result {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(s.errs))
	}
	res, err := s.results[0], s.errs[0]
	s.results, s.errs = nil, nil
	if err != nil {
		t.Fatalf("server-side verification: %v", err)
	}
	return res
}

func sdkConfig(token string) aws.Config {
	return aws.Config{
		Region: "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret, SessionToken: token}, nil
		}),
		Retryer: func() aws.Retryer { return aws.NopRetryer{} },
	}
}

// The Go SDK's own service clients, as Postern's users run them.
func TestGoSDKClients(t *testing.T) {
	srv := newVerifyingServer(t, map[string]string{testAKID: testSecret})
	ctx := context.Background()
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGYJz0NnTZgVHYLZL5VsnsZeRCHyGxIqQW2GSTZvl2pU test@postern"

	for _, token := range []string{"", "session/token+1=="} {
		eic := ec2instanceconnect.NewFromConfig(sdkConfig(token), func(o *ec2instanceconnect.Options) {
			o.BaseEndpoint = aws.String(srv.URL)
		})
		_, err := eic.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
			InstanceId: aws.String("i-0123456789abcdef0"), InstanceOSUser: aws.String("ec2-user"), SSHPublicKey: aws.String(key),
		})
		if err != nil {
			t.Errorf("SendSSHPublicKey: %v", err)
		}
		if res := srv.only(t); res.Service != "ec2-instance-connect" || res.Region != "us-east-1" || res.SessionToken != token {
			t.Errorf("SendSSHPublicKey result = %+v", res)
		}
	}

	// IAM uses the Query protocol: a form-encoded body.
	client := iam.NewFromConfig(sdkConfig(""), func(o *iam.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	if _, err := client.ListUsers(ctx, &iam.ListUsersInput{PathPrefix: aws.String("/division a/ü+=&/")}); err != nil {
		t.Errorf("ListUsers: %v", err)
	}
	if res := srv.only(t); res.Service != "iam" {
		t.Errorf("ListUsers result = %+v", res)
	}

	// An endpoint URL with a path of its own.
	client = iam.NewFromConfig(sdkConfig(""), func(o *iam.Options) { o.BaseEndpoint = aws.String(srv.URL + "/prefix%20x/") })
	if _, err := client.ListUsers(ctx, &iam.ListUsersInput{}); err != nil {
		t.Errorf("ListUsers with a base path: %v", err)
	}
	srv.only(t)
}

// botocoreScript signs requests with botocore, which the aws CLI and boto3
// use; it reads cases as JSON on stdin and writes signed requests.
const botocoreScript = `
import json, sys
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
out = []
for c in json.load(sys.stdin):
    creds = Credentials(c["akid"], c["secret"], c["token"] or None)
    req = AWSRequest(method=c["method"], url=c["url"], data=c["body"].encode(), headers=c["headers"])
    if c["expires"]:
        SigV4QueryAuth(creds, c["service"], c["region"], expires=c["expires"]).add_auth(req)
    else:
        SigV4Auth(creds, c["service"], c["region"]).add_auth(req)
    p = req.prepare()
    out.append({"url": p.url, "headers": dict(p.headers.items())})
json.dump(out, sys.stdout)
`

type botoCase struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers"`
	Service string            `json:"service"`
	Region  string            `json:"region"`
	Expires int               `json:"expires"`
	Token   string            `json:"token"`
	AKID    string            `json:"akid"`
	Secret  string            `json:"secret"`
}

func TestBotocoreSigner(t *testing.T) {
	if testing.Short() {
		t.Skip("runs python3")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is not installed (.ci/run installs it)")
	}
	if err := exec.Command(py, "-c", "import botocore").Run(); err != nil {
		t.Fatal("botocore is not installed (.ci/run installs python3-boto3)")
	}
	srv := newVerifyingServer(t, map[string]string{testAKID: testSecret})
	json11 := map[string]string{"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AWSEC2InstanceConnectService.SendSSHPublicKey"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
	cases := []botoCase{
		{Method: "POST", URL: srv.URL + "/", Body: `{"InstanceId":"i-0123456789abcdef0"}`, Headers: json11, Service: "ec2-instance-connect"},
		{Method: "POST", URL: srv.URL + "/", Body: "Action=DescribeInstances&Version=2016-11-15&Filter.1.Value.1=a+b", Headers: form, Service: "ec2", Token: "tok/en+=="},
		{Method: "GET", URL: srv.URL + "/?Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fa%20b%2F&empty=", Service: "iam"},
		{Method: "GET", URL: srv.URL + "/a%20b/%E1%88%B4/x%2Fy", Service: "ec2"},
		// botocore normalises the path before signing; Go sends it as is.
		{Method: "GET", URL: srv.URL + "/x/./y/../z//w/", Service: "ec2"},
		{Method: "GET", URL: srv.URL + "/openTunnel?instanceConnectEndpointId=eice-0123456789abcdef0&remotePort=22&privateIpAddress=10.0.0.5",
			Service: "ec2-instance-connect", Expires: 60},
		{Method: "GET", URL: srv.URL + "/openTunnel?instanceConnectEndpointId=eice-0123456789abcdef0&remotePort=22&privateIpAddress=10.0.0.5&maxTunnelDuration=60",
			Service: "ec2-instance-connect", Expires: 60, Token: "presigned/token=="},
	}
	for i := range cases {
		cases[i].Region, cases[i].AKID, cases[i].Secret = "us-east-1", testAKID, testSecret
		if cases[i].Headers == nil {
			cases[i].Headers = map[string]string{}
		}
	}
	in, _ := json.Marshal(cases)
	cmd := exec.Command(py, "-c", botocoreScript)
	cmd.Stdin = strings.NewReader(string(in))
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("botocore: %v", err)
	}
	var signed []struct {
		URL     string            `json:"url"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(outb, &signed); err != nil || len(signed) != len(cases) {
		t.Fatalf("botocore output %q: %v", outb, err)
	}
	for i, c := range cases {
		req, err := http.NewRequest(c.Method, signed[i].URL, strings.NewReader(c.Body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range signed[i].Headers {
			if !strings.EqualFold(k, "Content-Length") {
				req.Header.Set(k, v)
			}
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		res := srv.only(t)
		if res.Service != c.Service || res.Presigned != (c.Expires > 0) || res.SessionToken != c.Token {
			t.Errorf("%s %s: result %+v", c.Method, c.URL, res)
		}
		if c.Expires > 0 && res.Expires.Sub(res.SignedAt) != time.Duration(c.Expires)*time.Second {
			t.Errorf("%s: expires %v after signing", c.URL, res.Expires.Sub(res.SignedAt))
		}
	}
}
