package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
)

// Calls: SDK clients, raw SigV4-signed requests, error decoding, and the
// checks that every test of refused calls repeats.

// newHTTPClient returns a client that trusts only the CA in caFile.
func newHTTPClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(caFile)
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("read the server's CA %s: %v", caFile, err)
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   60 * time.Second,
	}
}

// tlsConfig returns a TLS configuration that trusts the server's CA.
func (s *server) tlsConfig() *tls.Config {
	return s.httpClient.Transport.(*http.Transport).TLSClientConfig.Clone()
}

// awsConfig is an AWS SDK configuration for s with static credentials, the
// server's CA, and no retries (every answer is asserted as it comes).
func (s *server) awsConfig(keyID, secret string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		HTTPClient:   s.httpClient,
		BaseEndpoint: aws.String(s.URL),
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	}
}

// ec2 and iam return SDK clients signed with the given key.
func (s *server) ec2(keyID, secret string) *ec2.Client {
	return ec2.NewFromConfig(s.awsConfig(keyID, secret))
}

func (s *server) iam(keyID, secret string) *iam.Client {
	return iam.NewFromConfig(s.awsConfig(keyID, secret))
}

// adminEC2 and adminIAM are the admin's clients.
func (s *server) adminEC2() *ec2.Client { return s.ec2(s.AdminKeyID, s.AdminSecret) }
func (s *server) adminIAM() *iam.Client { return s.iam(s.AdminKeyID, s.AdminSecret) }

// admin returns the admin's credentials for raw requests.
func (s *server) admin() *aws.Credentials {
	return &aws.Credentials{AccessKeyID: s.AdminKeyID, SecretAccessKey: s.AdminSecret}
}

// apiError describes an error an SDK call returned: the AWS code, the
// message and the HTTP status. It fails the test when err is not an answer
// of the server, and notes the message for the leak checks.
func apiError(t *testing.T, err error) (code, message string, status int) {
	t.Helper()
	if err == nil {
		t.Fatal("the call succeeded; want an AWS error")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an AWS API error", err)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	noteError(ae.ErrorMessage())
	noteError(err.Error())
	return ae.ErrorCode(), ae.ErrorMessage(), status
}

// wantAPIError asserts that err carries code and status.
func wantAPIError(t *testing.T, err error, code string, status int) string {
	t.Helper()
	gotCode, msg, gotStatus := apiError(t, err)
	if gotCode != code || gotStatus != status {
		t.Fatalf("error %s (HTTP %d, %q), want %s (HTTP %d)", gotCode, gotStatus, msg, code, status)
	}
	return msg
}

// request is one raw API call.
type request struct {
	Method string            // default POST (GET for presigned URLs)
	Target string            // X-Amz-Target: an AWS JSON call; else Query
	Form   url.Values        // Query parameters (body, or URL when presigned)
	Body   []byte            // the body as sent; default: Form encoded, or "{}"
	Header map[string]string // extra headers, signed

	Service string           // signing name; default from the call
	Creds   *aws.Credentials // nil: unsigned
	// SignedAt is the signature's time; zero means now.
	SignedAt time.Time
	// PresignExpires, when positive, presigns a GET URL with this
	// X-Amz-Expires instead of signing headers.
	PresignExpires time.Duration
}

// response is a raw call's answer.
type response struct {
	Status    int
	RequestID string
	Code      string // AWS error code, if an error
	Message   string
	Body      []byte
}

func (r response) String() string {
	return fmt.Sprintf("HTTP %d %s %q (request %s)", r.Status, r.Code, r.Message, r.RequestID)
}

// ec2Form returns Query parameters for an EC2 action.
func ec2Form(action string, kv ...string) url.Values {
	return queryForm(action, ec2Version, kv...)
}

// iamForm returns Query parameters for an IAM action.
func iamForm(action string, kv ...string) url.Values {
	return queryForm(action, iamVersion, kv...)
}

func queryForm(action, version string, kv ...string) url.Values {
	v := url.Values{"Action": {action}, "Version": {version}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// build turns req into an HTTP request, signed as asked.
func (s *server) build(t *testing.T, req request) *http.Request {
	t.Helper()
	body := req.Body
	if body == nil {
		if req.Target != "" {
			body = []byte("{}")
		} else if req.PresignExpires == 0 {
			body = []byte(req.Form.Encode())
		}
	}
	service := req.Service
	if service == "" {
		switch {
		case strings.HasPrefix(req.Target, cloudTrailTarget):
			service = "cloudtrail"
		case strings.HasPrefix(req.Target, posternTarget):
			service = "postern"
		case req.Form.Get("Version") == iamVersion:
			service = "iam"
		default:
			service = "ec2"
		}
	}
	signedAt := req.SignedAt
	if signedAt.IsZero() {
		signedAt = time.Now()
	}
	ctx := context.Background()
	signer := v4.NewSigner()

	if req.PresignExpires > 0 {
		q := url.Values{}
		for k, v := range req.Form {
			q[k] = v
		}
		q.Set("X-Amz-Expires", fmt.Sprint(int(req.PresignExpires/time.Second)))
		hr, err := http.NewRequest(http.MethodGet, s.URL+"/?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		empty := sha256.Sum256(nil)
		signed, _, err := signer.PresignHTTP(ctx, *req.Creds, hr, hex.EncodeToString(empty[:]), service, region, signedAt.UTC())
		if err != nil {
			t.Fatalf("presign: %v", err)
		}
		hr, err = http.NewRequest(http.MethodGet, signed, nil)
		if err != nil {
			t.Fatal(err)
		}
		return hr
	}

	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	hr, err := http.NewRequest(method, s.URL+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.Target != "" {
		hr.Header.Set("Content-Type", "application/x-amz-json-1.1")
		hr.Header.Set("X-Amz-Target", req.Target)
	} else {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	for k, v := range req.Header {
		hr.Header.Set(k, v)
	}
	if req.Creds != nil {
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(ctx, *req.Creds, hr, hex.EncodeToString(sum[:]), service, region, signedAt.UTC()); err != nil {
			t.Fatalf("sign: %v", err)
		}
	}
	return hr
}

// do sends a raw request and decodes the answer, noting any error message
// for the leak checks.
func (s *server) do(t *testing.T, req request) response {
	t.Helper()
	return s.send(t, s.build(t, req))
}

// send sends a built request.
func (s *server) send(t *testing.T, hr *http.Request) response {
	t.Helper()
	resp, err := s.httpClient.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", hr.Method, hr.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	r := response{Status: resp.StatusCode, RequestID: resp.Header.Get("x-amzn-RequestId"), Body: b}
	if resp.StatusCode/100 != 2 {
		r.Code, r.Message = decodeError(b)
		noteError(r.Message)
	}
	return r
}

// decodeError reads an AWS error in any of the three shapes Postern
// speaks: JSON {"__type","Message"}, IAM <ErrorResponse><Error>, EC2
// <Response><Errors><Error>.
func decodeError(body []byte) (code, message string) {
	var j struct {
		Type    string `json:"__type"`
		Message string `json:"Message"`
	}
	if json.Unmarshal(body, &j) == nil && j.Type != "" {
		return j.Type, j.Message
	}
	var x struct {
		Code     string `xml:"Error>Code"`
		Message  string `xml:"Error>Message"`
		ECode    string `xml:"Errors>Error>Code"`
		EMessage string `xml:"Errors>Error>Message"`
	}
	if xml.Unmarshal(body, &x) == nil {
		if x.Code != "" {
			return x.Code, x.Message
		}
		return x.ECode, x.EMessage
	}
	return "", ""
}

// want asserts a raw answer's status and code.
func (r response) want(t *testing.T, status int, code string) {
	t.Helper()
	if r.Status != status || r.Code != code {
		t.Fatalf("got %v, want HTTP %d %s\nbody: %.600s", r, status, code, r.Body)
	}
	if r.RequestID == "" {
		t.Errorf("the answer carries no x-amzn-RequestId")
	}
}

// want200 asserts a successful raw answer.
func (r response) want200(t *testing.T) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("got %v, want HTTP 200\nbody: %.600s", r, r.Body)
	}
	if r.RequestID == "" {
		t.Errorf("the answer carries no x-amzn-RequestId")
	}
}

// assertServing checks that the server still answers /healthz and a good
// signed call.
func (s *server) assertServing(t *testing.T) {
	t.Helper()
	resp, err := s.httpClient.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz answered %s", resp.Status)
	}
	if _, err := s.adminEC2().DescribeVpcs(context.Background(), &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatalf("DescribeVpcs as admin after the bad call: %v", err)
	}
}

// snapshot describes the server's identities and inventory as the admin
// sees them, so that a test can prove that a refused call changed nothing.
func (s *server) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ic, ec := s.adminIAM(), s.adminEC2()
	var b strings.Builder
	users, err := ic.ListUsers(ctx, &iam.ListUsersInput{})
	if err != nil {
		t.Fatalf("snapshot: ListUsers: %v", err)
	}
	for _, u := range users.Users {
		name := aws.ToString(u.UserName)
		fmt.Fprintf(&b, "user %s %s\n", name, aws.ToString(u.UserId))
		keys, err := ic.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: u.UserName})
		if err != nil {
			t.Fatalf("snapshot: ListAccessKeys %s: %v", name, err)
		}
		for _, k := range keys.AccessKeyMetadata {
			fmt.Fprintf(&b, "  key %s %s\n", aws.ToString(k.AccessKeyId), k.Status)
		}
		pols, err := ic.ListUserPolicies(ctx, &iam.ListUserPoliciesInput{UserName: u.UserName})
		if err != nil {
			t.Fatalf("snapshot: ListUserPolicies %s: %v", name, err)
		}
		for _, p := range pols.PolicyNames {
			doc, err := ic.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: u.UserName, PolicyName: aws.String(p)})
			if err != nil {
				t.Fatalf("snapshot: GetUserPolicy %s %s: %v", name, p, err)
			}
			fmt.Fprintf(&b, "  policy %s %s\n", p, aws.ToString(doc.PolicyDocument))
		}
	}
	groups, err := ic.ListGroups(ctx, &iam.ListGroupsInput{})
	if err != nil {
		t.Fatalf("snapshot: ListGroups: %v", err)
	}
	for _, g := range groups.Groups {
		fmt.Fprintf(&b, "group %s\n", aws.ToString(g.GroupName))
	}
	vpcs, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatalf("snapshot: DescribeVpcs: %v", err)
	}
	for _, v := range vpcs.Vpcs {
		fmt.Fprintf(&b, "vpc %s %s %s\n", aws.ToString(v.VpcId), aws.ToString(v.CidrBlock), formatTags(v.Tags))
	}
	subnets, err := ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil {
		t.Fatalf("snapshot: DescribeSubnets: %v", err)
	}
	for _, sn := range subnets.Subnets {
		fmt.Fprintf(&b, "subnet %s %s %s %s\n", aws.ToString(sn.SubnetId), aws.ToString(sn.VpcId), aws.ToString(sn.CidrBlock), formatTags(sn.Tags))
	}
	return b.String()
}
