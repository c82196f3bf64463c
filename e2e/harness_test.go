package e2e

import (
	"bufio"
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
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
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

// The harness: TestMain builds the binary; startServer runs `postern
// server` as a child process and hands back what a client needs to reach
// it; the helpers below sign raw requests, read the audit trail and
// remember every secret and error message for the leak checks.

var (
	// posternBin is the binary TestMain built.
	posternBin string
	// repoRoot is the module root (the parent of this directory).
	repoRoot string
)

const (
	region = "us-east-1"

	ec2Version = "2016-11-15"
	iamVersion = "2010-05-08"

	cloudTrailTarget = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"
	posternTarget    = "Postern_20261101"

	// commandTimeout bounds every client command a test runs.
	commandTimeout = 2 * time.Minute

	// ciHint ends every message about a missing tool.
	ciHint = ".ci/run should install it"
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot find the module root next to the e2e directory: %v\n", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "postern-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go tool is not on PATH:", err)
		return 1
	}
	posternBin = filepath.Join(dir, "postern")
	// -trimpath as in the Makefile, so that the quickstart's `make build`
	// finds everything in the build cache.
	build := exec.Command(goTool, "build", "-trimpath", "-o", posternBin, "./cmd/postern")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/postern: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// cleanEnv is a minimal environment for a child process: PATH, and HOME
// set to home so that no ~/.aws or other personal settings are read.
func cleanEnv(home string, extra map[string]string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// watchedBuffer collects a child's output and wakes up whoever waits for
// a line to appear in it.
type watchedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{changed: make(chan struct{})} }

func (b *watchedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (b *watchedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// await returns the first complete line containing substr once it has
// been written, or false when done is closed or the timeout passes first.
func (b *watchedBuffer) await(substr string, done <-chan struct{}, timeout time.Duration) (string, bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		b.mu.Lock()
		text, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		lines := strings.Split(text, "\n")
		for _, line := range lines[:len(lines)-1] { // the last one is incomplete
			if strings.Contains(line, substr) {
				return line, true
			}
		}
		select {
		case <-changed:
		case <-done:
			// The writer is gone; what it wrote last is in b already
			// (exec.Cmd.Wait returns after copying all output).
			for _, line := range strings.Split(b.String(), "\n") {
				if strings.Contains(line, substr) {
					return line, true
				}
			}
			return "", false
		case <-timer.C:
			return "", false
		}
	}
}

// server is a running `postern server` child process.
type server struct {
	URL     string
	DataDir string
	// AdminKeyID and AdminSecret come from the data dir's admin.credentials.
	AdminKeyID, AdminSecret string
	// Env holds the variables `postern env --data-dir DIR` exports.
	Env map[string]string
	// Log is the server's stderr (its structured log); Stdout its
	// messages for the operator.
	Log, Stdout *watchedBuffer

	cmd        *exec.Cmd
	exited     chan struct{} // closed when the process has been reaped
	exitErr    error
	httpClient *http.Client
	home       string

	stopOnce  sync.Once
	stopCheck error // the outcome of Stop, reported once
}

// defaultServerArgs are the flags every test server runs with.
var defaultServerArgs = []string{"--listen", "127.0.0.1:0", "--digest-interval", "1s", "--shutdown-grace", "5s"}

// startServer runs `postern server` on a fresh data directory, waits until
// it says it is listening, and stops it (asserting a clean exit) when the
// test ends.
func startServer(t *testing.T, extraArgs ...string) *server {
	t.Helper()
	return startServerIn(t, t.TempDir(), extraArgs...)
}

// startServerIn is startServer on a given (possibly used) data directory.
func startServerIn(t *testing.T, dataDir string, extraArgs ...string) *server {
	t.Helper()
	s := &server{
		DataDir: dataDir,
		Log:     newWatchedBuffer(),
		Stdout:  newWatchedBuffer(),
		exited:  make(chan struct{}),
		home:    t.TempDir(),
	}
	args := append([]string{"server", "--data-dir", dataDir}, defaultServerArgs...)
	s.cmd = exec.Command(posternBin, append(args, extraArgs...)...)
	s.cmd.Env = cleanEnv(s.home, nil)
	s.cmd.Stdout = s.Stdout
	s.cmd.Stderr = s.Log
	// Should the test binary die, its servers die with it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start postern server: %v", err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.Stop(t) })

	const ready = "Postern server listening on "
	line, ok := s.Stdout.await(ready, s.exited, 60*time.Second)
	if !ok {
		t.Fatalf("postern server did not report %q\nstdout:\n%s\nlog:\n%s", ready, s.Stdout, s.Log)
	}
	rest := line[strings.Index(line, ready)+len(ready):]
	s.URL, _, _ = strings.Cut(rest, " ")
	if !strings.HasPrefix(s.URL, "https://127.0.0.1:") {
		t.Fatalf("server URL %q from %q is not https://127.0.0.1:PORT", s.URL, line)
	}

	s.AdminKeyID, s.AdminSecret = readCredentials(t, filepath.Join(dataDir, "admin.credentials"))
	noteSecret(s.AdminSecret, "admin secret of "+dataDir)
	s.httpClient = newHTTPClient(t, filepath.Join(dataDir, "ca.pem"))
	s.Env = s.posternEnv(t)
	if s.Env["AWS_ENDPOINT_URL"] != s.URL {
		t.Fatalf("postern env says AWS_ENDPOINT_URL=%q, the server listens on %q", s.Env["AWS_ENDPOINT_URL"], s.URL)
	}
	return s
}

// Stop sends SIGTERM (unless the process has ended already), waits for
// the exit, and fails the test unless the exit status is 0. It then checks
// the complete log for secrets. It is safe to call more than once.
func (s *server) Stop(t *testing.T) {
	t.Helper()
	first := false
	s.stopOnce.Do(func() {
		first = true
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-s.exited:
			if s.exitErr != nil {
				s.stopCheck = fmt.Errorf("postern server exited with %v; want exit status 0", s.exitErr)
			}
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.stopCheck = errors.New("postern server did not exit within 30s of SIGTERM")
		}
	})
	if first {
		if s.stopCheck != nil {
			t.Errorf("%v\nlog:\n%s", s.stopCheck, s.Log)
		}
		assertNoSecretsIn(t, "the log of the server on "+s.DataDir, s.Log.String()+s.Stdout.String())
	}
}

// terminate sends SIGTERM without waiting.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}

// readCredentials reads the [postern-admin] profile of a shared
// credentials file.
func readCredentials(t *testing.T, path string) (id, secret string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read admin credentials: %v", err)
	}
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in = line == "[postern-admin]"
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !in || !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(id, "AKIA") || len(secret) != 40 {
		t.Fatalf("%s: no [postern-admin] profile with an AKIA… id and a 40-character secret", path)
	}
	return id, secret
}

// postern runs the postern binary with a clean environment plus env and
// returns its stdout, stderr and exit status.
func postern(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, posternBin, args...)
	cmd.Env = cleanEnv(t.TempDir(), env)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run postern %s: %v", strings.Join(args, " "), err)
	}
	if code != 0 {
		noteError(errOut.String())
	}
	return out.String(), errOut.String(), code
}

// postern runs a postern client command against s as its admin.
func (s *server) postern(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return postern(t, s.Env, args...)
}

// posternEnv runs `postern env --data-dir DIR`, parses its exports and
// checks that they hold what the issue promises.
func (s *server) posternEnv(t *testing.T) map[string]string {
	t.Helper()
	out, errOut, code := postern(t, nil, "env", "--data-dir", s.DataDir)
	if code != 0 {
		t.Fatalf("postern env: exit %d: %s", code, errOut)
	}
	env := parseExports(t, out)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE"} {
		if env[k] == "" {
			t.Fatalf("postern env does not export %s; got %v", k, keysOf(env))
		}
	}
	if env["AWS_ACCESS_KEY_ID"] != s.AdminKeyID || env["AWS_SECRET_ACCESS_KEY"] != s.AdminSecret {
		t.Fatalf("postern env exports other credentials than admin.credentials holds")
	}
	if want := filepath.Join(s.DataDir, "ca.pem"); env["AWS_CA_BUNDLE"] != want {
		t.Errorf("postern env: AWS_CA_BUNDLE=%q, want %q", env["AWS_CA_BUNDLE"], want)
	}
	return env
}

// parseExports reads the `export K=V` lines of a shell snippet.
func parseExports(t *testing.T, text string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("cannot parse %q", line)
		}
		env[k] = shellUnquote(v)
	}
	return env
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// shellUnquote undoes POSIX single quoting ('…' with '\” for a quote).
func shellUnquote(v string) string {
	if !strings.HasPrefix(v, "'") {
		return v
	}
	var b strings.Builder
	in := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\'':
			in = !in
		case c == '\\' && !in && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

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

// auditEvent is one event of LookupEvents, with its CloudTrail record
// parsed.
type auditEvent struct {
	EventName       string
	EventID         string `json:"EventId"`
	Username        string
	AccessKeyID     string `json:"AccessKeyId"`
	CloudTrailEvent string
	Record          map[string]any `json:"-"`
}

// lookupEvents calls LookupEvents as the admin with the given request
// body and returns every event on the first page (up to 1000).
func (s *server) lookupEvents(t *testing.T, in map[string]any) []auditEvent {
	t.Helper()
	if in["MaxResults"] == nil {
		in["MaxResults"] = 1000
	}
	body, _ := json.Marshal(in)
	var r response
	// On a throttled server the admin may have to wait for a token.
	waitFor(t, "LookupEvents not to be throttled", 30*time.Second, func() bool {
		r = s.do(t, request{Target: cloudTrailTarget + ".LookupEvents", Body: body, Creds: s.admin()})
		return r.Code != "ThrottlingException"
	})
	if r.Status != http.StatusOK {
		t.Fatalf("LookupEvents: %v", r)
	}
	var out struct{ Events []auditEvent }
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("LookupEvents answer: %v\n%s", err, r.Body)
	}
	for i := range out.Events {
		if err := json.Unmarshal([]byte(out.Events[i].CloudTrailEvent), &out.Events[i].Record); err != nil {
			t.Fatalf("CloudTrailEvent of %s is not JSON: %v", out.Events[i].EventID, err)
		}
	}
	return out.Events
}

// findAudit returns the audit record of the call with requestID, looked up
// by event name (or among errors when eventName is ""). It fails the test
// when there is none.
func (s *server) findAudit(t *testing.T, eventName, requestID string) map[string]any {
	t.Helper()
	if requestID == "" {
		t.Fatal("findAudit: the call had no request id")
	}
	in := map[string]any{"ErrorsOnly": true}
	if eventName != "" {
		in = map[string]any{"LookupAttributes": []map[string]string{{"AttributeKey": "EventName", "AttributeValue": eventName}}}
	}
	events := s.lookupEvents(t, in)
	for _, ev := range events {
		if ev.Record["requestID"] == requestID {
			if eventName != "" && ev.EventName != eventName {
				t.Errorf("LookupEvents by EventName %s returned a %s event", eventName, ev.EventName)
			}
			return ev.Record
		}
	}
	t.Fatalf("no audit record with requestID %s among %d events (lookup %v)", requestID, len(events), in)
	return nil
}

// wantAudited asserts that the call with requestID was audited with
// errorCode (and, for calls that named a key, that key).
func (s *server) wantAudited(t *testing.T, eventName, requestID, errorCode, accessKeyID string) map[string]any {
	t.Helper()
	rec := s.findAudit(t, eventName, requestID)
	if got, _ := rec["errorCode"].(string); got != errorCode {
		t.Errorf("audit record of %s: errorCode %q, want %q", requestID, got, errorCode)
	}
	if errorCode != "" {
		if msg, _ := rec["errorMessage"].(string); msg == "" {
			t.Errorf("audit record of %s has no errorMessage", requestID)
		}
	}
	if ip, _ := rec["sourceIPAddress"].(string); ip != "127.0.0.1" {
		t.Errorf("audit record of %s: sourceIPAddress %q, want 127.0.0.1", requestID, ip)
	}
	if accessKeyID != "" {
		id, _ := rec["userIdentity"].(map[string]any)["accessKeyId"].(string)
		if id != accessKeyID {
			t.Errorf("audit record of %s: userIdentity.accessKeyId %q, want %q", requestID, id, accessKeyID)
		}
	}
	return rec
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

// waitFor polls cond until it holds or the deadline passes. It is for
// conditions that no event announces (a token bucket refilling, a port
// closing).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The leak registry: every secret access key the tests saw, and every
// error message a server answered.
var leaks struct {
	mu      sync.Mutex
	secrets map[string]string // secret → what it is
	errors  []string
}

// noteSecret remembers a secret that must never be logged or audited.
func noteSecret(secret, what string) {
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	if leaks.secrets == nil {
		leaks.secrets = map[string]string{}
	}
	leaks.secrets[secret] = what
}

// noteError remembers an error message a server (or a client reporting
// the server's answer) produced.
func noteError(msg string) {
	if msg == "" {
		return
	}
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	leaks.errors = append(leaks.errors, msg)
}

// knownSecrets returns every secret noted so far.
func knownSecrets() map[string]string {
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	out := make(map[string]string, len(leaks.secrets))
	for k, v := range leaks.secrets {
		out[k] = v
	}
	return out
}

// seenErrors returns every error message noted so far.
func seenErrors() []string {
	leaks.mu.Lock()
	defer leaks.mu.Unlock()
	return append([]string(nil), leaks.errors...)
}

// assertNoSecretsIn fails the test if any known secret occurs in text.
func assertNoSecretsIn(t *testing.T, where, text string) {
	t.Helper()
	for secret, what := range knownSecrets() {
		if strings.Contains(text, secret) {
			t.Errorf("%s contains the %s", where, what)
		}
	}
}
