package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/postern-dev/postern"
)

// oracleCase is a request for the AWS SDK's signer to sign.
type oracleCase struct {
	name    string
	method  string
	url     string // scheme, host and, unless path is set, path and query
	path    string // unescaped path, to let Go choose the escaping
	rawPath string // escaped path, to force an escaping such as %2F
	query   string // raw query
	header  http.Header
	body    string
	service string
	region  string
	token   string
	expires int // presign with X-Amz-Expires when > 0
}

var oracleCases = []oracleCase{
	{name: "eic SendSSHPublicKey", method: "POST", url: "https://ec2-instance-connect.us-east-1.amazonaws.com/",
		header: http.Header{
			"Content-Type": {"application/x-amz-json-1.1"},
			"X-Amz-Target": {"AWSEC2InstanceConnectService.SendSSHPublicKey"},
		},
		body:    `{"InstanceId":"i-0123456789abcdef0","InstanceOSUser":"ec2-user","SSHPublicKey":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEKEYEXAMPLEKEYEXAMPLEKEYEXAMPLEKEYEX user@host"}`,
		service: "ec2-instance-connect", region: "us-east-1"},
	{name: "json without target or content type", method: "POST", url: "http://127.0.0.1:8080/",
		body: `{"a":"b c","unicode":"ü ሴ 😀"}`, service: "ec2-instance-connect", region: "eu-west-3"},
	{name: "ec2 query form body", method: "POST", url: "https://ec2.eu-west-3.amazonaws.com/",
		header:  http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}},
		body:    "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0123456789abcdef0&Filter.1.Name=tag%3AName&Filter.1.Value.1=web+server",
		service: "ec2", region: "eu-west-3"},
	{name: "iam query with session token", method: "POST", url: "https://iam.amazonaws.com/",
		header:  http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}},
		body:    "Action=ListUsers&Version=2010-05-08",
		service: "iam", region: "us-east-1", token: "FwoGZXIvYXdzEXAMPLE//token+with/odd=chars"},
	{name: "get odd query", method: "GET", url: "https://ec2.us-east-1.amazonaws.com",
		path: "/",
		query: "q=hello%20world&q=a%2Bb&plus=a+b&empty=&novalue&eq=1%3D2%26y%3D3&%E2%9C%93=%F0%9F%98%80" +
			"&Z=last&a=first&tilde=~x&slash=a%2Fb&pct=100%25&semi=%3Bx&rep=2&rep=1&rep=10&Action=DescribeVpcs",
		service: "ec2", region: "us-east-1"},
	{name: "path with spaces", method: "GET", url: "http://localhost:9000", path: "/some dir/file name.txt",
		service: "ec2", region: "us-east-1"},
	{name: "path with unicode", method: "GET", url: "http://localhost:9000", path: "/ünïcödé/\u1234/😀",
		service: "iam", region: "us-east-1"},
	{name: "path with escaped slash", method: "GET", url: "http://localhost:9000", path: "/a/b/c", rawPath: "/a%2Fb/c",
		query: "x=1", service: "ec2", region: "us-east-1"},
	{name: "path with sub-delims", method: "PUT", url: "http://localhost:9000", path: "/x;y=z/@a:b/!$&'()*+,",
		body: "data", service: "ec2", region: "us-east-1"},
	{name: "custom headers", method: "POST", url: "https://ec2-instance-connect.us-east-1.amazonaws.com/",
		header: http.Header{
			"Content-Type":   {"application/x-amz-json-1.1"},
			"X-Amz-Target":   {"AWSEC2InstanceConnectService.SendSerialConsoleSSHPublicKey"},
			"X-Custom-Space": {"  a   b  c  "},
			"X-Multi":        {"one", "two ", " three"},
		},
		body: `{}`, service: "ec2-instance-connect", region: "us-east-1", token: "session-token-1"},
	{name: "presigned openTunnel", method: "GET", url: "https://eice-0123456789abcdef0.ec2-instance-connect-endpoint.us-east-1.amazonaws.com",
		path:    "/openTunnel",
		query:   "instanceConnectEndpointId=eice-0123456789abcdef0&remotePort=22&privateIpAddress=10.0.0.5",
		service: "ec2-instance-connect", region: "us-east-1", expires: 60},
	{name: "presigned openTunnel with token and duration", method: "GET", url: "https://eice-0123456789abcdef0.ec2-instance-connect-endpoint.us-east-1.amazonaws.com",
		path:    "/openTunnel",
		query:   "instanceConnectEndpointId=eice-0123456789abcdef0&remotePort=22&privateIpAddress=10.0.0.5&maxTunnelDuration=3600",
		service: "ec2-instance-connect", region: "us-east-1", expires: 60, token: "presign/token+value=="},
	{name: "presigned iam with long expiry", method: "GET", url: "https://iam.amazonaws.com", path: "/",
		query:   "Action=ListUsers&Version=2010-05-08&PathPrefix=%2Fdivision%20a%2F",
		service: "iam", region: "us-east-1", expires: 604800},
}

// sign has the SDK sign (or presign) the case at t with secret and returns
// the request as the client would send it.
func (c oracleCase) sign(tb testing.TB, secret string, at time.Time) (*http.Request, []byte) {
	tb.Helper()
	body := []byte(c.body)
	req, err := http.NewRequest(c.method, c.url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if c.path != "" {
		req.URL.Path, req.URL.RawPath = c.path, c.rawPath
	}
	req.URL.RawQuery = c.query
	if c.expires > 0 {
		q := req.URL.RawQuery
		if q != "" {
			q += "&"
		}
		req.URL.RawQuery = q + "X-Amz-Expires=" + strconv.Itoa(c.expires)
	}
	for k, vs := range c.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	creds := aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: secret, SessionToken: c.token}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	signer := v4.NewSigner()
	if c.expires == 0 {
		if err := signer.SignHTTP(context.Background(), creds, req, hash, c.service, c.region, at); err != nil {
			tb.Fatal(err)
		}
		return req, body
	}
	signedURL, hdr, err := signer.PresignHTTP(context.Background(), creds, req, hash, c.service, c.region, at)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := http.NewRequest(c.method, signedURL, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range hdr {
		if k == "Host" {
			continue // Go sends r.Host
		}
		out.Header[k] = vs
	}
	return out, body
}

func TestOracleSDKSigner(t *testing.T) {
	signedAt := testNow.Add(-30 * time.Second)
	for _, c := range oracleCases {
		t.Run(c.name, func(t *testing.T) {
			req, body := c.sign(t, testSecret, signedAt)
			v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})

			// As built in process (no RequestURI), as an endpoint might hand it on.
			if _, err := v.Verify(context.Background(), req, body); err != nil {
				t.Fatalf("in-process request: %v", err)
			}
			sr, sbody := overTheWire(t, req, body)
			res, err := v.Verify(context.Background(), sr, sbody)
			if err != nil {
				t.Fatalf("server-side request: %v\n%s %s", err, sr.Method, sr.RequestURI)
			}
			want := Result{AccessKeyID: testAKID, Region: c.region, Service: c.service,
				SignedAt: signedAt, SessionToken: c.token, Presigned: c.expires > 0}
			if c.expires > 0 {
				want.Expires = signedAt.Add(time.Duration(c.expires) * time.Second)
			}
			got := *res
			if sent := sr.URL.RawQuery + sr.Header.Get("Authorization"); len(got.Signature) != 32 || !strings.Contains(sent, "Signature="+hex.EncodeToString(got.Signature)) {
				t.Errorf("result's signature %x is not the one sent", got.Signature)
			}
			got.Signature = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("result = %+v\nwant     %+v", got, want)
			}
		})
	}
}

// mutation changes one thing of a server-side request that the signature
// covers.
type mutation struct {
	name    string
	applies func(oracleCase) bool
	apply   func(r *http.Request, body []byte) []byte
}

func always(oracleCase) bool { return true }

var mutations = []mutation{
	{"body byte", func(c oracleCase) bool { return c.body != "" }, func(r *http.Request, body []byte) []byte {
		b := bytes.Clone(body)
		b[len(b)/2] ^= 0x20
		return b
	}},
	{"body appended", always, func(r *http.Request, body []byte) []byte { return append(bytes.Clone(body), ' ') }},
	{"signed header value", func(c oracleCase) bool { return len(c.header) > 0 }, func(r *http.Request, body []byte) []byte {
		for k := range r.Header {
			if k == "Content-Type" || strings.HasPrefix(k, "X-Amz-Target") || strings.HasPrefix(k, "X-Custom") {
				r.Header[k] = []string{r.Header[k][0] + "x"}
				break
			}
		}
		return body
	}},
	{"query value", func(c oracleCase) bool { return c.query != "" }, func(r *http.Request, body []byte) []byte {
		path, q, _ := strings.Cut(r.RequestURI, "?")
		parts := strings.Split(q, "&")
		for i, p := range parts {
			if !strings.HasPrefix(p, "X-Amz-") {
				parts[i] = p + "1"
				break
			}
		}
		setTarget(r, path, strings.Join(parts, "&"))
		return body
	}},
	{"query param added", always, func(r *http.Request, body []byte) []byte {
		path, q, _ := strings.Cut(r.RequestURI, "?")
		if q != "" {
			q += "&"
		}
		setTarget(r, path, q+"extra=1")
		return body
	}},
	{"path", always, func(r *http.Request, body []byte) []byte {
		path, q, _ := strings.Cut(r.RequestURI, "?")
		setTarget(r, path+"x", q)
		return body
	}},
	{"path escaping", func(c oracleCase) bool { return c.rawPath != "" }, func(r *http.Request, body []byte) []byte {
		path, q, _ := strings.Cut(r.RequestURI, "?")
		setTarget(r, strings.Replace(path, "%2F", "/", 1), q)
		return body
	}},
	{"host", always, func(r *http.Request, body []byte) []byte { r.Host = "evil.example.com"; return body }},
	{"method", always, func(r *http.Request, body []byte) []byte {
		if r.Method == "GET" {
			r.Method = "POST"
		} else {
			r.Method = "GET"
		}
		return body
	}},
	{"date", always, func(r *http.Request, body []byte) []byte {
		later := func(s string) string {
			t, _ := time.Parse(amzDateLayout, s)
			return t.Add(time.Second).Format(amzDateLayout)
		}
		if d := r.Header.Get("X-Amz-Date"); d != "" {
			r.Header.Set("X-Amz-Date", later(d))
			return body
		}
		path, q, _ := strings.Cut(r.RequestURI, "?")
		old := url.Values{}
		if vs, err := url.ParseQuery(q); err == nil {
			old = vs
		}
		d := old.Get("X-Amz-Date")
		setTarget(r, path, strings.Replace(q, "X-Amz-Date="+d, "X-Amz-Date="+later(d), 1))
		return body
	}},
	{"region", always, func(r *http.Request, body []byte) []byte {
		rescope(r, "us-east-1", "eu-west-3", "eu-west-3", "us-east-1")
		return body
	}},
	{"service", always, func(r *http.Request, body []byte) []byte {
		rescope(r, "ec2-instance-connect", "ec2", "ec2", "iam", "iam", "ec2-instance-connect")
		return body
	}},
	{"session token", func(c oracleCase) bool { return c.token != "" }, func(r *http.Request, body []byte) []byte {
		if tok := r.Header.Get("X-Amz-Security-Token"); tok != "" {
			r.Header.Set("X-Amz-Security-Token", tok+"x")
			return body
		}
		path, q, _ := strings.Cut(r.RequestURI, "?")
		setTarget(r, path, strings.Replace(q, "X-Amz-Security-Token=", "X-Amz-Security-Token=x", 1))
		return body
	}},
}

// rescope replaces the first matching region or service (given as old, new
// pairs) in the credential scope, in either form.
func rescope(r *http.Request, pairs ...string) {
	for i := 0; i < len(pairs); i += 2 {
		old, new := pairs[i], pairs[i+1]
		if a := r.Header.Get("Authorization"); a != "" {
			if strings.Contains(a, "/"+old+"/") {
				r.Header.Set("Authorization", strings.Replace(a, "/"+old+"/", "/"+new+"/", 1))
				return
			}
			continue
		}
		path, q, _ := strings.Cut(r.RequestURI, "?")
		if strings.Contains(q, "%2F"+old+"%2F") {
			setTarget(r, path, strings.Replace(q, "%2F"+old+"%2F", "%2F"+new+"%2F", 1))
			return
		}
	}
}

func TestOracleMutationsFail(t *testing.T) {
	signedAt := testNow.Add(-30 * time.Second)
	for _, c := range oracleCases {
		req, body := c.sign(t, testSecret, signedAt)
		for _, m := range mutations {
			if !m.applies(c) {
				continue
			}
			t.Run(c.name+"/"+m.name, func(t *testing.T) {
				sr, sbody := overTheWire(t, req, body)
				sbody = m.apply(sr, sbody)
				v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
				_, err := v.Verify(context.Background(), sr, sbody)
				wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
			})
		}
		t.Run(c.name+"/secret", func(t *testing.T) {
			sr, sbody := overTheWire(t, req, body)
			v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret[1:] + "x"})
			_, err := v.Verify(context.Background(), sr, sbody)
			pe := wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
			if strings.Contains(pe.Error(), testSecret) {
				t.Errorf("error mentions the secret: %v", pe)
			}
		})
	}
}
