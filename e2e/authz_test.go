package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// requestIDOf returns the request id of a failed SDK call.
func requestIDOf(t *testing.T, err error) string {
	t.Helper()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.ServiceRequestID() == "" {
		t.Fatalf("error %v carries no request id", err)
	}
	return re.ServiceRequestID()
}

// decisions returns the policy decisions an audit record notes.
func decisions(t *testing.T, rec map[string]any) []map[string]any {
	t.Helper()
	extra, _ := rec["additionalEventData"].(map[string]any)
	list, _ := extra["policyDecisions"].([]any)
	var out []map[string]any
	for _, d := range list {
		if m, ok := d.(map[string]any); ok {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		b, _ := json.Marshal(rec)
		t.Fatalf("the audit record notes no authorization decision: %s", b)
	}
	return out
}

// wantDecision asserts the last decision of an audit record.
func wantDecision(t *testing.T, rec map[string]any, action, decision, sid string) {
	t.Helper()
	ds := decisions(t, rec)
	d := ds[len(ds)-1]
	if d["action"] != action || d["decision"] != decision || (sid != "" && d["sid"] != sid) {
		t.Errorf("audited decision %v, want action %s decision %s sid %q", d, action, decision, sid)
	}
}

// createUserWithKey creates a user and an access key with the admin CLI
// and returns the key.
func createUserWithKey(t *testing.T, s *server, name string) (id, secret string) {
	t.Helper()
	if _, errOut, code := s.postern(t, "user", "create", name); code != 0 {
		t.Fatalf("postern user create %s: exit %d: %s", name, code, errOut)
	}
	out, errOut, code := s.postern(t, "access-key", "create", "--user", name, "--output", "json")
	if code != 0 {
		t.Fatalf("postern access-key create --user %s: exit %d: %s", name, code, errOut)
	}
	var created map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("postern access-key create --output json: %v\n%s", err, out)
	}
	id, _ = created["AccessKey"]["AccessKeyId"].(string)
	secret, _ = created["AccessKey"]["SecretAccessKey"].(string)
	if id == "" || len(secret) != 40 {
		t.Fatalf("postern access-key create printed no key: %s", out)
	}
	noteSecret(secret, "secret of "+name+"'s key")
	return id, secret
}

// putPolicy puts an inline policy with the admin CLI.
func putPolicy(t *testing.T, s *server, ownerFlag, owner, name, doc string) {
	t.Helper()
	if _, errOut, code := s.postern(t, "policy", "put", ownerFlag, owner, "--name", name, "--document", doc); code != 0 {
		t.Fatalf("postern policy put %s %s --name %s: exit %d: %s", ownerFlag, owner, name, code, errOut)
	}
}

// TestAuthorization checks that policies decide what a user may do, that
// denials are audited with the decision, and that an explicit Deny, in the
// user's own policies or a group's, wins over an Allow.
func TestAuthorization(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := context.Background()

	id, secret := createUserWithKey(t, s, "reader")
	putPolicy(t, s, "--user", "reader", "DescribeOnly",
		`{"Version":"2012-10-17","Statement":[{"Sid":"Describe","Effect":"Allow","Action":"ec2:DescribeVpcs","Resource":"*"}]}`)
	ec := s.ec2(id, secret)

	if _, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatalf("DescribeVpcs as reader (allowed): %v", err)
	}
	before := s.snapshot(t)
	_, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.9.0.0/16")})
	msg := wantAPIError(t, err, "UnauthorizedOperation", http.StatusForbidden)
	if !strings.Contains(msg, "ec2:CreateVpc") || !strings.Contains(msg, "user/reader") {
		t.Errorf("denial message %q does not name the action and the user", msg)
	}
	if after := s.snapshot(t); after != before {
		t.Errorf("a denied CreateVpc changed the server:\n%s\n---\n%s", before, after)
	}
	rec := s.wantAudited(t, "CreateVpc", requestIDOf(t, err), "UnauthorizedOperation", id)
	wantDecision(t, rec, "ec2:CreateVpc", "implicitDeny", "")
	if u, _ := rec["userIdentity"].(map[string]any)["userName"].(string); u != "reader" {
		t.Errorf("the denial is audited for user %q, want reader", u)
	}
	_, err = ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	wantAPIError(t, err, "UnauthorizedOperation", http.StatusForbidden)
	_, err = s.iam(id, secret).CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("intruder")})
	wantAPIError(t, err, "AccessDenied", http.StatusForbidden)
	rec = s.wantAudited(t, "CreateUser", requestIDOf(t, err), "AccessDenied", id)
	wantDecision(t, rec, "iam:CreateUser", "implicitDeny", "")

	// policy simulate agrees and names the deciding statement.
	out, _, code := s.postern(t, "policy", "simulate", "--user", "reader", "--action", "ec2:DescribeVpcs")
	if code != 0 || !strings.Contains(out, "allowed") || !strings.Contains(out, "Describe") {
		t.Errorf("policy simulate ec2:DescribeVpcs: exit %d\n%s", code, out)
	}
	out, _, code = s.postern(t, "policy", "simulate", "--user", "reader", "--action", "ec2:CreateVpc")
	if code != 3 || !strings.Contains(out, "implicitDeny") {
		t.Errorf("policy simulate ec2:CreateVpc: exit %d, want 3 and implicitDeny\n%s", code, out)
	}

	t.Run("explicit deny in the user's policy wins", func(t *testing.T) {
		putPolicy(t, s, "--user", "reader", "Freeze",
			`{"Version":"2012-10-17","Statement":[{"Sid":"FreezeAll","Effect":"Deny","Action":"ec2:*","Resource":"*"}]}`)
		_, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
		wantAPIError(t, err, "UnauthorizedOperation", http.StatusForbidden)
		rec := s.wantAudited(t, "DescribeVpcs", requestIDOf(t, err), "UnauthorizedOperation", id)
		wantDecision(t, rec, "ec2:DescribeVpcs", "explicitDeny", "FreezeAll")
		out, _, code := s.postern(t, "policy", "simulate", "--user", "reader", "--action", "ec2:DescribeVpcs")
		if code != 3 || !strings.Contains(out, "explicitDeny") || !strings.Contains(out, "FreezeAll") {
			t.Errorf("policy simulate after the deny: exit %d, want 3, explicitDeny and FreezeAll\n%s", code, out)
		}
		if _, errOut, code := s.postern(t, "policy", "delete", "--user", "reader", "--name", "Freeze"); code != 0 {
			t.Fatalf("postern policy delete: exit %d: %s", code, errOut)
		}
		if _, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
			t.Fatalf("DescribeVpcs after the deny was deleted: %v", err)
		}
	})

	t.Run("explicit deny in a group's policy wins", func(t *testing.T) {
		if _, errOut, code := s.postern(t, "group", "create", "frozen"); code != 0 {
			t.Fatalf("postern group create: exit %d: %s", code, errOut)
		}
		putPolicy(t, s, "--group", "frozen", "NoDescribe",
			`{"Version":"2012-10-17","Statement":[{"Sid":"NoVpcs","Effect":"Deny","Action":"ec2:Describe*","Resource":"*"}]}`)
		if _, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
			t.Fatalf("DescribeVpcs before joining the group: %v", err)
		}
		if _, errOut, code := s.postern(t, "group", "add-user", "frozen", "reader"); code != 0 {
			t.Fatalf("postern group add-user: exit %d: %s", code, errOut)
		}
		_, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
		wantAPIError(t, err, "UnauthorizedOperation", http.StatusForbidden)
		rec := s.wantAudited(t, "DescribeVpcs", requestIDOf(t, err), "UnauthorizedOperation", id)
		wantDecision(t, rec, "ec2:DescribeVpcs", "explicitDeny", "NoVpcs")
	})
	assertNoLeaks(t, s)
}
