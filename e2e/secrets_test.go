package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

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

// assertNoLeaks greps the server's log, its full audit export and every
// error message seen so far for every secret access key the tests know.
func assertNoLeaks(t *testing.T, s *server) {
	t.Helper()
	out, errOut, code := s.postern(t, "audit", "export")
	if code != 0 {
		t.Fatalf("postern audit export: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("postern audit export printed %d records; want the whole trail:\n%s", len(lines), out)
	}
	for i, l := range lines {
		var rec struct {
			EventName string `json:"eventName"`
			EventID   string `json:"eventID"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.EventName == "" || rec.EventID == "" {
			t.Fatalf("postern audit export line %d is not a CloudTrail record (%v): %.300s", i+1, err, l)
		}
	}
	if len(knownSecrets()) == 0 {
		t.Fatal("no secrets were noted; the leak check would prove nothing")
	}
	assertNoSecretsIn(t, "the audit export", out)
	assertNoSecretsIn(t, "the server log", s.Log.String()+s.Stdout.String())
	assertNoSecretsIn(t, "the error messages answered", strings.Join(seenErrors(), "\n"))
}

// TestSecretsNeverLeak creates access keys in every way there is, uses
// them rightly and wrongly on a server that logs at debug level, and then
// looks for the secrets in the log, the audit trail, every error message
// and the database files.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--log-level", "debug")
	ctx := context.Background()

	// A key made by the admin CLI, which prints it once (by design).
	if _, errOut, code := s.postern(t, "user", "create", "carol"); code != 0 {
		t.Fatalf("postern user create carol: exit %d: %s", code, errOut)
	}
	out, errOut, code := s.postern(t, "access-key", "create", "--user", "carol", "--output", "json")
	if code != 0 {
		t.Fatalf("postern access-key create: exit %d: %s", code, errOut)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("postern access-key create --output json: %v\n%s", err, out)
	}
	carolID, _ := raw["AccessKey"]["AccessKeyId"].(string)
	carolSecret, _ := raw["AccessKey"]["SecretAccessKey"].(string)
	if carolID == "" || len(carolSecret) != 40 {
		t.Fatalf("postern access-key create --output json printed no key: %s", out)
	}
	noteSecret(carolSecret, "secret of carol's key (admin CLI)")

	// A second key of the admin, made with the SDK.
	ic := s.adminIAM()
	k2, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{})
	if err != nil {
		t.Fatalf("CreateAccessKey for the caller: %v", err)
	}
	if aws.ToString(k2.AccessKey.UserName) != "admin" {
		t.Errorf("CreateAccessKey without UserName made a key for %q, want the caller (admin)", aws.ToString(k2.AccessKey.UserName))
	}
	admin2ID, admin2Secret := aws.ToString(k2.AccessKey.AccessKeyId), aws.ToString(k2.AccessKey.SecretAccessKey)
	noteSecret(admin2Secret, "secret of the admin's second key (Go SDK)")

	// Right and wrong uses.
	if _, err := s.ec2(admin2ID, admin2Secret).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatalf("DescribeVpcs with the admin's second key: %v", err)
	}
	_, err = s.ec2(carolID, carolSecret).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantAPIError(t, err, "UnauthorizedOperation", http.StatusForbidden)
	_, err = s.iam(carolID, carolSecret).CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("mallory")})
	wantAPIError(t, err, "AccessDenied", http.StatusForbidden)
	wrong := []byte(carolSecret)
	wrong[0] ^= 1
	_, err = s.ec2(carolID, string(wrong)).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantAPIError(t, err, "InvalidSignatureException", http.StatusForbidden)
	r := s.do(t, request{Form: ec2Form("DescribeVpcs"), PresignExpires: time.Minute, Creds: &aws.Credentials{AccessKeyID: carolID, SecretAccessKey: carolSecret}})
	r.want(t, http.StatusForbidden, "UnauthorizedOperation")
	r = s.do(t, request{Target: cloudTrailTarget + ".LookupEvents", Body: []byte(`{"LookupAttributes":`), Creds: &aws.Credentials{AccessKeyID: carolID, SecretAccessKey: carolSecret}})
	r.want(t, http.StatusBadRequest, "SerializationException")

	// A deactivated key no longer signs; a deleted one is unknown.
	if _, err := ic.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("carol"), AccessKeyId: aws.String(carolID), Status: iamtypes.StatusTypeInactive}); err != nil {
		t.Fatalf("UpdateAccessKey Inactive: %v", err)
	}
	_, err = s.ec2(carolID, carolSecret).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantAPIError(t, err, "UnrecognizedClientException", http.StatusForbidden)
	if _, errOut, code := s.postern(t, "access-key", "delete", "--user", "carol", carolID); code != 0 {
		t.Fatalf("postern access-key delete: exit %d: %s", code, errOut)
	}
	_, err = s.ec2(carolID, carolSecret).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantAPIError(t, err, "UnrecognizedClientException", http.StatusForbidden)

	// A failing admin CLI command prints the server's message, not a key.
	_, errOut, code = postern(t, map[string]string{
		"AWS_ACCESS_KEY_ID": carolID, "AWS_SECRET_ACCESS_KEY": carolSecret,
		"AWS_REGION": region, "AWS_ENDPOINT_URL": s.URL, "AWS_CA_BUNDLE": s.Env["AWS_CA_BUNDLE"],
	}, "vpc", "list")
	if code == 0 || !strings.Contains(errOut, "UnrecognizedClientException") {
		t.Errorf("postern vpc list with a deleted key: exit %d, stderr %q; want a failure naming UnrecognizedClientException", code, errOut)
	}
	assertNoSecretsIn(t, "the stderr of a failing admin command", errOut)

	assertNoLeaks(t, s)
	// Secrets are sealed at rest: no file of the data directory but the
	// admin's credentials file holds one in plain text.
	entries, err := os.ReadDir(s.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range entries {
		if e.IsDir() || e.Name() == "admin.credentials" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.DataDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		assertNoSecretsIn(t, "the data directory's "+e.Name(), string(b))
		checked++
	}
	if checked == 0 {
		t.Error("the data directory holds no files to check")
	}
}
