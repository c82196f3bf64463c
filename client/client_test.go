package client

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/sigv4"
)

const (
	testKeyID  = "AKIAIOSFODNN7EXAMPLE"
	testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// testConfig points at url with static test credentials.
func testConfig(url string) aws.Config {
	return aws.Config{
		Region:           "us-west-2",
		BaseEndpoint:     aws.String(url),
		Credentials:      credentials.NewStaticCredentialsProvider(testKeyID, testSecret, ""),
		HTTPClient:       http.DefaultClient,
		RetryMaxAttempts: 1,
	}
}

// verified checks r's signature with Postern's own verifier and returns
// the body and the verification result.
func verified(t *testing.T, r *http.Request) ([]byte, *sigv4.Result) {
	t.Helper()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	v := sigv4.NewVerifier(func(_ context.Context, id string) (string, error) {
		if id != testKeyID {
			return "", postern.Errorf(postern.KindUnknownKey, "unknown key")
		}
		return testSecret, nil
	})
	res, err := v.Verify(r.Context(), r, body)
	if err != nil {
		t.Errorf("signature does not verify: %v", err)
		return body, &sigv4.Result{}
	}
	return body, res
}

func TestCallJSONSignsAndDecodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, res := verified(t, r)
		if r.Method != http.MethodPost || r.URL.Path != "/" {
			t.Errorf("request is %s %s, want POST /", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Content-Type"); got != "application/x-amz-json-1.1" {
			t.Errorf("Content-Type = %q", got)
		}
		if got := r.Header.Get("X-Amz-Target"); got != "Postern_20261101.ListAuditDigests" {
			t.Errorf("X-Amz-Target = %q", got)
		}
		if res.Service != "postern" || res.Region != "us-west-2" {
			t.Errorf("signed for %s/%s, want postern/us-west-2", res.Service, res.Region)
		}
		if string(body) != `{"FromSeq":7}` {
			t.Errorf("body = %s", body)
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprint(w, `{"Digests":[{"Seq":7,"Hash":"00ff","Time":"2026-01-02T03:04:05Z","KeyId":"SHA256:x","Signature":"AQI="}]}`)
	}))
	defer srv.Close()

	ds, err := ListAuditDigests(context.Background(), testConfig(srv.URL), 7)
	if err != nil {
		t.Fatal(err)
	}
	want := postern.AuditDigest{Seq: 7, Hash: []byte{0, 0xff}, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), KeyID: "SHA256:x", Signature: []byte{1, 2}}
	if len(ds) != 1 || ds[0].Seq != want.Seq || string(ds[0].Hash) != string(want.Hash) || !ds[0].Time.Equal(want.Time) ||
		ds[0].KeyID != want.KeyID || string(ds[0].Signature) != string(want.Signature) {
		t.Errorf("digests = %+v, want [%+v]", ds, want)
	}
}

func TestCallJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   string
		code   string
	}{
		{"plain", 400, `{"__type":"InvalidArgsException","Message":"bad id"}`, "InvalidArgsException: bad id", "InvalidArgsException"},
		{"namespaced", 400, `{"__type":"com.amazonaws.cloudtrail#InvalidTimeRangeException","message":"EndTime is before StartTime"}`,
			"InvalidTimeRangeException: EndTime is before StartTime", "InvalidTimeRangeException"},
		{"suffixed", 403, `{"__type":"AccessDeniedException:http://internal","Message":"no"}`, "AccessDeniedException: no", "AccessDeniedException"},
		{"not AWS", 502, `<html>bad gateway</html>`, "Bad Gateway: the server answered HTTP 502 without an AWS error", "Bad Gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			err := CallJSON(context.Background(), testConfig(srv.URL), CloudTrailTarget, CloudTrailSigningName, "LookupEvents", nil, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if got := ErrorCode(err); got != tc.code {
				t.Errorf("ErrorCode = %q, want %q", got, tc.code)
			}
			var ae smithy.APIError
			if !errors.As(err, &ae) || (tc.status >= 500) != (ae.ErrorFault() == smithy.FaultServer) {
				t.Errorf("fault of %v is wrong", err)
			}
		})
	}
}

func TestCallQuery(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, res := verified(t, r)
		form, _ := url.ParseQuery(string(body))
		if res.Service != "iam" {
			t.Errorf("signed for service %q", res.Service)
		}
		switch form.Get("Action") {
		case "SimulatePrincipalPolicy":
			fmt.Fprint(w, `<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
<SimulatePrincipalPolicyResult><EvaluationResults><member><EvalActionName>ec2:DescribeVpcs</EvalActionName>
<EvalDecision>allowed</EvalDecision></member></EvaluationResults></SimulatePrincipalPolicyResult>
<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>`)
		case "IAMError":
			w.WriteHeader(404)
			fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>no user bob</Message></Error><RequestId>1</RequestId></ErrorResponse>`)
		default:
			w.WriteHeader(400)
			fmt.Fprint(w, `<Response><Errors><Error><Code>InvalidAction</Code><Message>no such action</Message></Error></Errors><RequestID>1</RequestID></Response>`)
		}
	}))
	defer srv.Close()
	cfg := testConfig(srv.URL)
	ctx := context.Background()

	var out struct {
		Results []struct {
			EvalActionName string
			EvalDecision   string
		} `xml:"SimulatePrincipalPolicyResult>EvaluationResults>member"`
	}
	if err := CallQuery(ctx, cfg, "iam", "us-east-1", url.Values{"Action": {"SimulatePrincipalPolicy"}}, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 1 || out.Results[0].EvalDecision != "allowed" || out.Results[0].EvalActionName != "ec2:DescribeVpcs" {
		t.Errorf("results = %+v", out.Results)
	}
	if err := CallQuery(ctx, cfg, "iam", "us-east-1", url.Values{"Action": {"IAMError"}}, nil); err == nil || err.Error() != "NoSuchEntity: no user bob" {
		t.Errorf("IAM error = %v", err)
	}
	if err := CallQuery(ctx, cfg, "iam", "us-east-1", url.Values{"Action": {"Other"}}, nil); err == nil || err.Error() != "InvalidAction: no such action" {
		t.Errorf("EC2 error = %v", err)
	}
}

func TestCleanSDKErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(400)
		fmt.Fprint(w, `<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID 'vpc-1' does not
 exist</Message></Error></Errors><RequestID>abc-123</RequestID></Response>`)
	}))
	defer srv.Close()
	_, err := EC2(testConfig(srv.URL)).DescribeVpcs(context.Background(), &ec2.DescribeVpcsInput{})
	if err == nil {
		t.Fatal("DescribeVpcs succeeded")
	}
	got := Clean(err)
	if got.Error() != "InvalidVpcID.NotFound: The vpc ID 'vpc-1' does not exist" {
		t.Errorf("Clean(%q) = %q", err, got)
	}
	if ErrorCode(got) != "InvalidVpcID.NotFound" {
		t.Errorf("Clean loses the error chain: code %q", ErrorCode(got))
	}
	// A wrapped cleaned error keeps its context.
	if w := Clean(fmt.Errorf("delete vpc-1: %w", got)); w.Error() != "delete vpc-1: "+got.Error() {
		t.Errorf("Clean of a wrapped clean error = %q", w)
	}
	if Clean(nil) != nil {
		t.Error("Clean(nil) != nil")
	}

	// A server that is not there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = EC2(testConfig("http://"+addr)).DescribeVpcs(context.Background(), &ec2.DescribeVpcsInput{})
	if got := Clean(err).Error(); got != "cannot reach http://"+addr+": connection refused" {
		t.Errorf("unreachable server: %q (from %q)", got, err)
	}
}

// isolate points the SDK's loader at empty config files and clears the
// AWS_* variables, so that the developer's own setup cannot leak in.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	return dir
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	t.Run("environment", func(t *testing.T) {
		isolate(t)
		t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
		t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
		t.Setenv("AWS_REGION", "eu-west-1")
		t.Setenv("AWS_ENDPOINT_URL", "https://127.0.0.1:7443")
		cfg, err := Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Region != "eu-west-1" || aws.ToString(cfg.BaseEndpoint) != "https://127.0.0.1:7443" {
			t.Errorf("region %q endpoint %q", cfg.Region, aws.ToString(cfg.BaseEndpoint))
		}
	})
	t.Run("profile", func(t *testing.T) {
		dir := isolate(t)
		os.WriteFile(filepath.Join(dir, "config"), []byte("[profile lab]\nregion = us-east-2\nendpoint_url = https://lab:7443\n"), 0o600)
		os.WriteFile(filepath.Join(dir, "credentials"), []byte("[lab]\naws_access_key_id = "+testKeyID+"\naws_secret_access_key = "+testSecret+"\n"), 0o600)
		t.Setenv("AWS_PROFILE", "lab")
		cfg, err := Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		creds, _ := cfg.Credentials.Retrieve(ctx)
		if cfg.Region != "us-east-2" || aws.ToString(cfg.BaseEndpoint) != "https://lab:7443" || creds.AccessKeyID != testKeyID {
			t.Errorf("region %q endpoint %q key %q", cfg.Region, aws.ToString(cfg.BaseEndpoint), creds.AccessKeyID)
		}
	})
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no endpoint", map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": testKeyID, "AWS_SECRET_ACCESS_KEY": testSecret}, "set AWS_ENDPOINT_URL or run: eval"},
		{"no region", map[string]string{"AWS_ENDPOINT_URL": "https://x:1", "AWS_ACCESS_KEY_ID": testKeyID, "AWS_SECRET_ACCESS_KEY": testSecret}, "no region is configured"},
		{"no credentials", map[string]string{"AWS_ENDPOINT_URL": "https://x:1", "AWS_REGION": "us-east-1"}, "no AWS credentials found"},
		{"relative endpoint", map[string]string{"AWS_ENDPOINT_URL": "localhost:7443", "AWS_REGION": "us-east-1"}, "not an absolute URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEpochTime(t *testing.T) {
	in := EpochTime{time.Date(2026, 5, 6, 7, 8, 9, 250e6, time.UTC)}
	b, err := json.Marshal(in)
	if err != nil || string(b) != "1778051289.25" {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var out EpochTime
	if err := json.Unmarshal(b, &out); err != nil || !out.Equal(in.Time) {
		t.Errorf("round trip = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`"2026-05-06T07:08:09.25Z"`), &out); err != nil || !out.Equal(in.Time) {
		t.Errorf("RFC 3339 = %v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`true`), &out); err == nil {
		t.Error("a boolean timestamp was accepted")
	}
}

func TestExportedRecord(t *testing.T) {
	r := ExportedRecord{Seq: 3, EventID: "e", Body: json.RawMessage(`{"a":1}`), PrevHash: "0001", Hash: "ff"}
	rec, err := r.Record()
	if err != nil || string(rec.Body) != `{"a":1}` || rec.PrevHash[1] != 1 || rec.Hash[0] != 0xff || rec.Seq != 3 {
		t.Fatalf("Record = %+v, %v", rec, err)
	}
	// A tampered, non-JSON body arrives as a JSON string of its bytes.
	r.Body = json.RawMessage(`"{\"a\":1"`)
	if rec, err = r.Record(); err != nil || string(rec.Body) != `{"a":1` {
		t.Errorf("string body = %q, %v", rec.Body, err)
	}
	r.Hash = "xyz"
	if _, err := r.Record(); err == nil {
		t.Error("a non-hex hash was accepted")
	}
}

// TestAuditSourcePages checks that ScanAudit fills the caller's limit over
// the server's 1000-record pages and stops at the end of the trail.
func TestAuditSourcePages(t *testing.T) {
	total := int64(2345)
	growing := false // every page fetched adds a record, as on a real server
	pages := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := verified(t, r)
		switch r.Header.Get("X-Amz-Target") {
		case PosternTarget + ".ListAuditDigests":
			fmt.Fprint(w, `{"Digests":[{"Seq":10,"Hash":"aa","Time":"2026-01-01T00:00:00Z","KeyId":"k","Signature":""},{"Seq":2000,"Hash":"bb","Time":"2026-01-01T00:00:00Z","KeyId":"k","Signature":""}]}`)
		case PosternTarget + ".ExportAuditRecords":
			pages++
			var in struct {
				FromSeq int64
				Limit   int
			}
			json.Unmarshal(body, &in)
			if in.Limit <= 0 || in.Limit > 1000 {
				in.Limit = 1000
			}
			out := ExportAuditRecordsOutput{Records: []ExportedRecord{}}
			for s := in.FromSeq; s <= total && len(out.Records) < in.Limit; s++ {
				out.Records = append(out.Records, ExportedRecord{Seq: s, Body: json.RawMessage(`{}`), PrevHash: "00", Hash: "00"})
			}
			if len(out.Records) == in.Limit {
				out.NextSeq = in.FromSeq + int64(in.Limit)
			}
			json.NewEncoder(w).Encode(out)
			if growing {
				total++
			}
		default:
			t.Errorf("unexpected target %q", r.Header.Get("X-Amz-Target"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	src, err := NewAuditSource(ctx, testConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := src.ScanAudit(ctx, 1, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(recs)) != total || recs[0].Seq != 1 || recs[total-1].Seq != total || pages != 3 {
		t.Errorf("got %d records (%d…%d) in %d pages, want %d in 3", len(recs), recs[0].Seq, recs[len(recs)-1].Seq, pages, total)
	}
	if recs, _ = src.ScanAudit(ctx, 2300, 10); len(recs) != 10 || recs[9].Seq != 2309 {
		t.Errorf("a short scan returned %d records", len(recs))
	}
	ds, _ := src.ListAuditDigests(ctx, 11)
	if len(ds) != 1 || ds[0].Seq != 2000 {
		t.Errorf("ListAuditDigests(11) = %+v", ds)
	}

	// A trail that grows with every page: scanning page after page, as
	// the verifier does, still ends, at the first end seen.
	growing = true
	src, _ = NewAuditSource(ctx, testConfig(srv.URL))
	var last int64
	for from := int64(1); ; {
		recs, err := src.ScanAudit(ctx, from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		last = recs[len(recs)-1].Seq
		from = last + 1
		if from > 10000 {
			t.Fatal("the scan of a growing trail does not end")
		}
	}
	if last != 2345+2 {
		t.Errorf("the snapshot ends at %d, want %d (two full pages were audited before the end)", last, 2345+2)
	}
}

// TestNoRetryOnUntrustedCertificate checks that a TLS verification failure
// is reported after one attempt, not after the SDK's retries.
func TestNoRetryOnUntrustedCertificate(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("a request got through an untrusted certificate")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	cfg := testConfig(srv.URL)
	cfg.RetryMaxAttempts = 3
	_, err := IAM(cfg).ListUsers(context.Background(), &iam.ListUsersInput{})
	if err == nil || !strings.Contains(Clean(err).Error(), "certificate signed by unknown authority") {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("%d connection attempts, want 1", conns)
	}
}

// TLSConfig carries AWS_CA_BUNDLE to connections the SDK does not make.
func TestTLSConfigTrustsCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	dir := isolate(t)
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_CA_BUNDLE", bundle)
	cfg, err := Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tc := TLSConfig(cfg)
	if tc == nil || tc.RootCAs == nil {
		t.Fatalf("TLSConfig = %v, want the bundle's roots", tc)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("a connection with TLSConfig's settings: %v", err)
	}
	resp.Body.Close()
	if TLSConfig(aws.Config{}) != nil {
		t.Error("TLSConfig of a configuration without an HTTP client is not nil")
	}
}
