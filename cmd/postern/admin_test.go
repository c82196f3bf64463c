package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/server"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEnv is a running server and the environment that reaches it.
type testEnv struct {
	t       *testing.T
	srv     *server.Server
	dir     string
	logs    *syncBuffer
	secrets []string // every secret access key seen, for the leak checks
}

// startServer runs a real server in-process on a temporary data directory
// and points the AWS_* environment at it exactly as `postern env` says.
func startServer(t *testing.T) *testEnv {
	t.Helper()
	isolateAWS(t)
	dir := t.TempDir()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.Open(ctx, server.Config{
		Listen: "127.0.0.1:0", DataDir: dir, Region: "us-east-1", Store: "sqlite",
		DigestInterval: time.Second, ShutdownGrace: 5 * time.Second, Throttle: api.ThrottleConfig{Rate: 0},
	}, logger, func(string) {})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// The listener is open already: requests wait in its backlog until
	// Serve accepts them, so nothing needs to wait for readiness.
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})

	e := &testEnv{t: t, srv: srv, dir: dir, logs: logs}
	out, errOut, code := e.run("env", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("postern env: exit %d: %s", code, errOut)
	}
	applyEnv(t, out)
	e.secrets = append(e.secrets, os.Getenv("AWS_SECRET_ACCESS_KEY"))
	if os.Getenv("AWS_ENDPOINT_URL") == "" || os.Getenv("AWS_CA_BUNDLE") == "" || e.secrets[0] == "" {
		t.Fatalf("postern env printed an incomplete environment:\n%s", out)
	}
	return e
}

// isolateAWS clears the AWS_* variables and points the SDK at empty
// config files, so that the developer's own setup cannot leak in.
func isolateAWS(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "credentials"))
}

// applyEnv applies the "unset …" and "export K=V" lines that `postern env`
// prints, as a shell evaluating them would.
func applyEnv(t *testing.T, script string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(script))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "unset":
			for _, k := range fields[1:] {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
		case "export":
			k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
			if !ok {
				t.Fatalf("cannot read %q", sc.Text())
			}
			t.Setenv(k, shellUnquote(v))
		default:
			t.Fatalf("unexpected line from postern env: %q", sc.Text())
		}
	}
}

// shellUnquote undoes shellQuote.
func shellUnquote(s string) string {
	if !strings.HasPrefix(s, "'") {
		return s
	}
	return strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(s, "'"), "'"), `'\''`, "'")
}

// run runs one command line in-process and returns its output and status.
func (e *testEnv) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return e.runInput("", args...)
}

func (e *testEnv) runInput(stdin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: os.Getenv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = m.Run(ctx, args)
	return out.String(), errOut.String(), code
}

// ok runs a command that must succeed and returns its standard output.
func (e *testEnv) ok(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("postern %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// okJSON runs a command with --output json and decodes its output.
func (e *testEnv) okJSON(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--output", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("postern %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// fails runs a command that must fail with status code and one line on
// standard error containing every string in want.
func (e *testEnv) fails(code int, want []string, args ...string) string {
	e.t.Helper()
	_, errOut, got := e.run(args...)
	if got != code {
		e.t.Fatalf("postern %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), got, code, errOut)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "postern: ") {
		e.t.Errorf("postern %s: stderr is not one line: %q", strings.Join(args, " "), errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			e.t.Errorf("postern %s: stderr %q does not contain %q", strings.Join(args, " "), errOut, w)
		}
	}
	return errOut
}

// noSecrets checks that no secret seen so far appears in text.
func (e *testEnv) noSecrets(what, text string) {
	e.t.Helper()
	for _, s := range e.secrets {
		if s != "" && strings.Contains(text, s) {
			e.t.Errorf("%s contains the secret access key %.4s…", what, s)
		}
	}
}

// asKey sets the environment to sign with another access key for the rest
// of the (sub)test t.
func asKey(t *testing.T, id, secret string) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", id)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
}

// tableRows returns the rows of a table output (without the header), each
// split into columns.
func tableRows(out string) [][]string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var rows [][]string
	for _, l := range lines[1:] {
		rows = append(rows, regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1))
	}
	return rows
}

func TestUsers(t *testing.T) {
	e := startServer(t)

	out := e.ok("user", "create", "alice", "bob")
	if !strings.HasPrefix(out, "USER") || !strings.Contains(out, "alice") || !strings.Contains(out, "arn:aws:iam::") {
		t.Errorf("user create printed:\n%s", out)
	}
	var list struct {
		Users []struct{ UserName, Arn, UserId string }
	}
	e.okJSON(&list, "user", "list")
	names := map[string]bool{}
	for _, u := range list.Users {
		names[u.UserName] = true
	}
	if !names["admin"] || !names["alice"] || !names["bob"] || len(list.Users) != 3 {
		t.Errorf("user list = %+v", list.Users)
	}
	var one struct {
		User struct{ UserName, Arn string }
	}
	e.okJSON(&one, "user", "get", "alice")
	if one.User.UserName != "alice" || !strings.HasSuffix(one.User.Arn, ":user/alice") {
		t.Errorf("user get alice = %+v", one)
	}
	e.okJSON(&one, "user", "get")
	if one.User.UserName != "admin" {
		t.Errorf("user get (self) = %+v", one)
	}

	e.fails(1, []string{"create user alice: EntityAlreadyExists"}, "user", "create", "alice")
	e.fails(1, []string{"ValidationError", "UserName"}, "user", "create", "no spaces")
	e.fails(1, []string{"delete user nobody: NoSuchEntity"}, "user", "delete", "nobody")
	e.fails(2, []string{"want at least one NAME"}, "user", "create")
	t.Run("untrusted server", func(t *testing.T) {
		t.Setenv("AWS_CA_BUNDLE", "")
		e.fails(1, []string{"cannot reach https://127.0.0.1:", "certificate signed by unknown authority"}, "user", "list")
	})

	if out := e.ok("user", "delete", "bob"); !strings.Contains(out, "Deleted user bob") {
		t.Errorf("user delete printed %q", out)
	}
	if out := e.ok("user", "delete", "alice", "--output", "json"); out != "" {
		t.Errorf("user delete --output json printed %q", out)
	}
	rows := tableRows(e.ok("user", "list"))
	if len(rows) != 1 || rows[0][0] != "admin" {
		t.Errorf("after deleting, user list rows = %q", rows)
	}
}

func TestAccessKeys(t *testing.T) {
	e := startServer(t)
	adminKey := os.Getenv("AWS_ACCESS_KEY_ID")
	e.ok("user", "create", "carol")

	// Table form: a clear block with the secret, shown once.
	out := e.ok("access-key", "create", "--user", "carol")
	id := regexp.MustCompile(`AccessKeyId:\s+(AKIA\w{16})`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`SecretAccessKey:\s+(\S{40})`).FindStringSubmatch(out)
	if id == nil || secret == nil || !strings.Contains(out, "only this once") {
		t.Fatalf("access-key create printed:\n%s", out)
	}
	e.secrets = append(e.secrets, secret[1])

	// JSON form: the AccessKey object.
	var created struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey, UserName, Status string }
	}
	e.okJSON(&created, "access-key", "create", "--user", "carol")
	k2 := created.AccessKey
	if !strings.HasPrefix(k2.AccessKeyId, "AKIA") || len(k2.SecretAccessKey) != 40 || k2.UserName != "carol" || k2.Status != "Active" {
		t.Fatalf("access-key create --output json = %+v", created)
	}
	e.secrets = append(e.secrets, k2.SecretAccessKey)
	e.fails(1, []string{"LimitExceeded"}, "access-key", "create", "--user", "carol")

	out = e.ok("access-key", "list", "--user", "carol")
	if !strings.Contains(out, id[1]) || !strings.Contains(out, k2.AccessKeyId) || strings.Contains(out, secret[1]) {
		t.Errorf("access-key list printed:\n%s", out)
	}
	var own struct {
		AccessKeyMetadata []struct{ AccessKeyId string }
	}
	e.okJSON(&own, "access-key", "list")
	if len(own.AccessKeyMetadata) != 1 || own.AccessKeyMetadata[0].AccessKeyId != adminKey {
		t.Errorf("access-key list (self) = %+v", own)
	}

	// The new key signs requests: first refused by policy (so it did
	// authenticate), then allowed once a policy grants it.
	t.Run("as carol", func(t *testing.T) {
		asKey(t, id[1], secret[1])
		e.fails(1, []string{"AccessDenied", "iam:GetUser"}, "user", "get")
	})
	e.ok("policy", "put", "--user", "carol", "--name", "Self", "--document",
		`{"Version":"2012-10-17","Statement":[{"Sid":"OwnUser","Effect":"Allow","Action":["iam:GetUser","iam:*AccessKey*"],"Resource":"arn:aws:iam::*:user/${aws:username}"}]}`)
	t.Run("as carol with a policy", func(t *testing.T) {
		asKey(t, id[1], secret[1])
		var u struct{ User struct{ UserName string } }
		e.okJSON(&u, "user", "get")
		if u.User.UserName != "carol" {
			t.Errorf("user get as carol = %+v", u)
		}
		e.fails(1, []string{"AccessDenied"}, "user", "get", "admin")
	})

	if out := e.ok("access-key", "deactivate", "--user", "carol", id[1]); !strings.Contains(out, "Inactive") {
		t.Errorf("deactivate printed %q", out)
	}
	t.Run("deactivated", func(t *testing.T) {
		asKey(t, id[1], secret[1])
		e.fails(1, []string{"UnrecognizedClientException"}, "user", "get")
	})
	// Flags may follow the positional arguments.
	e.ok("access-key", "activate", id[1], "--user", "carol")
	t.Run("activated", func(t *testing.T) {
		asKey(t, id[1], secret[1])
		e.ok("user", "get")
	})
	e.fails(1, []string{"NoSuchEntity"}, "access-key", "delete", "--user", "admin", id[1])
	e.ok("access-key", "delete", "--user", "carol", id[1], k2.AccessKeyId)
	t.Run("deleted", func(t *testing.T) {
		asKey(t, id[1], secret[1])
		e.fails(1, []string{"UnrecognizedClientException"}, "user", "get")
	})
	t.Run("wrong secret", func(t *testing.T) {
		asKey(t, adminKey, strings.Repeat("x", 40))
		e.fails(1, []string{"InvalidSignatureException"}, "user", "list")
	})
	e.fails(1, []string{"DeleteConflict"}, "user", "delete", "carol")
	e.ok("policy", "delete", "--user", "carol", "--name", "Self")
	e.ok("user", "delete", "carol")
	e.noSecrets("the server log", e.logs.String())
}

func TestGroups(t *testing.T) {
	e := startServer(t)
	e.ok("user", "create", "alice", "bob")
	var g struct {
		Group struct{ GroupName, Arn string }
	}
	e.okJSON(&g, "group", "create", "devs")
	if g.Group.GroupName != "devs" || !strings.HasSuffix(g.Group.Arn, ":group/devs") {
		t.Errorf("group create = %+v", g)
	}
	e.ok("group", "create", "ops")
	e.ok("group", "add-user", "devs", "alice", "bob")
	e.ok("group", "add-user", "ops", "alice")
	e.fails(1, []string{"add-user nobody: NoSuchEntity"}, "group", "add-user", "devs", "nobody")

	var members struct {
		Group struct{ GroupName string }
		Users []struct{ UserName string }
	}
	e.okJSON(&members, "group", "get", "devs")
	if members.Group.GroupName != "devs" || len(members.Users) != 2 {
		t.Errorf("group get devs = %+v", members)
	}
	if out := e.ok("group", "get", "devs"); !strings.Contains(out, "MEMBERS") || !strings.Contains(out, "alice,bob") {
		t.Errorf("group get printed:\n%s", out)
	}
	var groups struct{ Groups []struct{ GroupName string } }
	e.okJSON(&groups, "group", "list", "--user", "bob")
	if len(groups.Groups) != 1 || groups.Groups[0].GroupName != "devs" {
		t.Errorf("group list --user bob = %+v", groups)
	}
	e.okJSON(&groups, "group", "list")
	if len(groups.Groups) != 2 {
		t.Errorf("group list = %+v", groups)
	}

	e.fails(1, []string{"delete group devs: DeleteConflict"}, "group", "delete", "devs")
	e.fails(1, []string{"DeleteConflict"}, "user", "delete", "bob")
	e.ok("group", "remove-user", "devs", "alice", "bob")
	e.okJSON(&members, "group", "get", "devs")
	if len(members.Users) != 0 {
		t.Errorf("after remove-user, members = %+v", members.Users)
	}
	e.ok("group", "delete", "devs")
	e.fails(1, []string{"NoSuchEntity"}, "group", "get", "devs")
	e.fails(2, []string{"want GROUP and at least one USER"}, "group", "add-user", "ops")
}

func TestPolicies(t *testing.T) {
	e := startServer(t)
	e.ok("user", "create", "dana")
	e.ok("group", "create", "readers")
	e.ok("group", "add-user", "readers", "dana")

	// A malformed document is refused, naming the field.
	e.fails(1, []string{"MalformedPolicyDocument", "Statement[0].Effect"},
		"policy", "put", "--user", "dana", "--name", "Bad", "--document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Alow","Action":"*","Resource":"*"}]}`)
	e.fails(1, []string{"MalformedPolicyDocument"}, "policy", "put", "--user", "dana", "--name", "Bad", "--document", `{"Version":`)
	e.fails(2, []string{"--user or --group is required"}, "policy", "put", "--name", "X", "--document", "{}")
	e.fails(2, []string{"not both"}, "policy", "get", "--user", "dana", "--group", "readers", "--name", "X")

	// file://, standard input and inline documents.
	file := filepath.Join(t.TempDir(), "read.json")
	os.WriteFile(file, []byte(`{"Version":"2012-10-17","Statement":[
		{"Sid":"ReadNetworks","Effect":"Allow","Action":["ec2:Describe*"],"Resource":"*"}]}`), 0o600)
	e.ok("policy", "put", "--group", "readers", "--name", "Read", "--document", "file://"+file)
	if _, errOut, code := e.runInput(`{"Version":"2012-10-17","Statement":[
		{"Sid":"NoSubnets","Effect":"Deny","Action":"ec2:DescribeSubnets","Resource":"*"},
		{"Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*",
		 "Condition":{"StringEquals":{"ec2:osuser":["ubuntu","deploy"]}}}]}`,
		"policy", "put", "--user", "dana", "--name", "Connect", "--document", "-"); code != 0 {
		t.Fatalf("policy put from stdin: %s", errOut)
	}

	var doc struct {
		UserName       string
		PolicyName     string
		PolicyDocument struct{ Statement []struct{ Sid string } }
	}
	e.okJSON(&doc, "policy", "get", "--user", "dana", "--name", "Connect")
	if doc.UserName != "dana" || doc.PolicyName != "Connect" || len(doc.PolicyDocument.Statement) != 2 || doc.PolicyDocument.Statement[0].Sid != "NoSubnets" {
		t.Errorf("policy get = %+v", doc)
	}
	if out := e.ok("policy", "get", "--group", "readers", "--name", "Read"); !strings.Contains(out, `"Sid": "ReadNetworks"`) {
		t.Errorf("policy get printed:\n%s", out)
	}
	rows := tableRows(e.ok("policy", "list"))
	want := [][]string{{"user/admin", "AdministratorAccess"}, {"user/dana", "Connect"}, {"group/readers", "Read"}}
	if len(rows) != len(want) {
		t.Errorf("policy list rows = %q, want %q", rows, want)
	}
	for i := range want {
		if i < len(rows) && strings.Join(rows[i], " ") != strings.Join(want[i], " ") {
			t.Errorf("policy list row %d = %q, want %q", i, rows[i], want[i])
		}
	}
	var names struct {
		Policies []struct{ GroupName, PolicyName string }
	}
	e.okJSON(&names, "policy", "list", "--group", "readers")
	if len(names.Policies) != 1 || names.Policies[0].PolicyName != "Read" || names.Policies[0].GroupName != "readers" {
		t.Errorf("policy list --group = %+v", names)
	}

	// Simulation: decisions, the statement that decided and exit statuses.
	simulate := func(code int, args ...string) string {
		t.Helper()
		out, errOut, got := e.run(append([]string{"policy", "simulate"}, args...)...)
		if got != code {
			t.Errorf("simulate %q: exit %d, want %d (%s)", args, got, code, errOut)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	if out := simulate(0, "--user", "admin", "--action", "ec2:DescribeVpcs"); out != "allowed ec2:DescribeVpcs * (policy AdministratorAccess, statement Bootstrap)" {
		t.Errorf("simulate admin: %q", out)
	}
	if out := simulate(0, "--user", "dana", "--action", "ec2:DescribeVpcs"); out != "allowed ec2:DescribeVpcs * (group readers policy Read, statement ReadNetworks)" {
		t.Errorf("simulate group policy: %q", out)
	}
	if out := simulate(3, "--user", "dana", "--action", "ec2:DescribeSubnets"); out != "explicitDeny ec2:DescribeSubnets * (policy Connect, statement NoSubnets)" {
		t.Errorf("simulate explicit deny: %q", out)
	}
	if out := simulate(3, "--user", "dana", "--action", "iam:CreateUser"); out != "implicitDeny iam:CreateUser * (no statement matched)" {
		t.Errorf("simulate implicit deny: %q", out)
	}
	instance := "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
	if out := simulate(0, "--user", "dana", "--action", "ec2-instance-connect:SendSSHPublicKey", "--resource", instance,
		"--context", "ec2:osuser=ubuntu"); out != "allowed ec2-instance-connect:SendSSHPublicKey "+instance+" (policy Connect, statement #1)" {
		t.Errorf("simulate with context: %q", out)
	}
	simulate(3, "--user", "dana", "--action", "ec2-instance-connect:SendSSHPublicKey", "--context", "ec2:osuser=root")
	// Several actions: one denied makes the status 3; JSON keeps the details.
	var res struct {
		EvaluationResults []struct {
			EvalActionName    string
			EvalDecision      string
			MatchedStatements []struct {
				SourcePolicyId string
				StatementSid   string
				StatementIndex int
			}
		}
	}
	out, _, code := e.run("policy", "simulate", "--user", "dana", "--action", "ec2:DescribeVpcs", "--action", "ec2:DescribeSubnets", "--output", "json")
	if code != 3 || json.Unmarshal([]byte(out), &res) != nil || len(res.EvaluationResults) != 2 {
		t.Fatalf("simulate --output json: exit %d:\n%s", code, out)
	}
	if r := res.EvaluationResults[1]; r.EvalDecision != "explicitDeny" || len(r.MatchedStatements) != 1 || r.MatchedStatements[0].SourcePolicyId != "Connect" || r.MatchedStatements[0].StatementSid != "NoSubnets" {
		t.Errorf("simulate JSON result = %+v", r)
	}
	e.fails(1, []string{"NoSuchEntity"}, "policy", "simulate", "--user", "nobody", "--action", "ec2:DescribeVpcs")
	e.fails(2, []string{"--context", "key=value"}, "policy", "simulate", "--user", "dana", "--action", "x:Y", "--context", "novalue")

	e.ok("policy", "delete", "--user", "dana", "--name", "Connect")
	e.fails(1, []string{"NoSuchEntity"}, "policy", "get", "--user", "dana", "--name", "Connect")
	simulate(3, "--user", "dana", "--action", "ec2-instance-connect:SendSSHPublicKey", "--context", "ec2:osuser=ubuntu")
}

func TestNetworks(t *testing.T) {
	e := startServer(t)
	var v struct {
		Vpc struct{ VpcId, CidrBlock, State string }
	}
	e.okJSON(&v, "vpc", "create", "--cidr", "10.0.0.0/16", "--tag", "Name=office", "--tag", "team=net")
	vpc := v.Vpc.VpcId
	if !regexp.MustCompile(`^vpc-[0-9a-f]{17}$`).MatchString(vpc) || v.Vpc.CidrBlock != "10.0.0.0/16" || v.Vpc.State != "available" {
		t.Fatalf("vpc create = %+v", v)
	}
	out := e.ok("vpc", "list")
	if rows := tableRows(out); len(rows) != 1 || rows[0][0] != vpc || rows[0][3] != "Name=office,team=net" {
		t.Errorf("vpc list printed:\n%s", out)
	}
	e.fails(1, []string{"InvalidParameterValue", "Host bits"}, "vpc", "create", "--cidr", "10.0.0.1/16")
	e.fails(2, []string{"--tag", "key=value"}, "vpc", "create", "--cidr", "10.9.0.0/16", "--tag", "oops")

	var s struct {
		Subnet struct{ SubnetId, VpcId, CidrBlock, AvailabilityZone string }
	}
	e.okJSON(&s, "subnet", "create", "--vpc-id", vpc, "--cidr", "10.0.1.0/24", "--tag", "Name=servers")
	subnet := s.Subnet.SubnetId
	if !strings.HasPrefix(subnet, "subnet-") || s.Subnet.VpcId != vpc || s.Subnet.AvailabilityZone != "us-east-1a" {
		t.Fatalf("subnet create = %+v", s)
	}
	e.ok("subnet", "create", "--vpc-id", vpc, "--cidr", "10.0.2.0/24", "--availability-zone", "us-east-1b")
	e.fails(1, []string{"InvalidSubnet.Range"}, "subnet", "create", "--vpc-id", vpc, "--cidr", "10.1.0.0/24")
	e.fails(1, []string{"InvalidSubnet.Conflict"}, "subnet", "create", "--vpc-id", vpc, "--cidr", "10.0.1.128/25")
	e.fails(1, []string{"InvalidVpcID.NotFound"}, "subnet", "create", "--vpc-id", "vpc-0123456789abcdef0", "--cidr", "10.0.3.0/24")
	e.fails(1, []string{"delete " + vpc + ": DependencyViolation"}, "vpc", "delete", vpc)

	var subnets struct{ Subnets []struct{ SubnetId string } }
	e.okJSON(&subnets, "subnet", "list", "--vpc-id", vpc)
	if len(subnets.Subnets) != 2 {
		t.Errorf("subnet list --vpc-id = %+v", subnets)
	}
	e.okJSON(&subnets, "subnet", "list", "--filter", "tag:Name=serv*")
	if len(subnets.Subnets) != 1 || subnets.Subnets[0].SubnetId != subnet {
		t.Errorf("subnet list --filter tag:Name = %+v", subnets)
	}

	// Tags: add to several resources, then filter and remove.
	e.ok("tag", "add", vpc, subnet, "--tag", "env=prod")
	var vpcs struct{ Vpcs []struct{ VpcId string } }
	e.okJSON(&vpcs, "vpc", "list", "--filter", "tag:env=prod,staging")
	if len(vpcs.Vpcs) != 1 {
		t.Errorf("vpc list --filter tag:env = %+v", vpcs)
	}
	e.ok("tag", "remove", vpc, subnet, "--key", "env", "--key", "team")
	e.okJSON(&vpcs, "vpc", "list", "--filter", "tag:env=prod")
	if len(vpcs.Vpcs) != 0 {
		t.Errorf("tag remove left env: %+v", vpcs)
	}
	if rows := tableRows(e.ok("vpc", "list", vpc)); len(rows) != 1 || rows[0][3] != "Name=office" {
		t.Errorf("after tag remove, vpc list rows = %q", rows)
	}
	e.fails(1, []string{"InvalidVpcID.NotFound"}, "tag", "add", "vpc-0123456789abcdef0", "--tag", "a=b")
	e.fails(1, []string{"reserved"}, "tag", "add", vpc, "--tag", "aws:x=y")

	// Instances: none are registered yet, but the call and filters work.
	if rows := tableRows(e.ok("instance", "list", "--filter", "instance-state-name=running,pending")); len(rows) != 0 {
		t.Errorf("instance list rows = %q", rows)
	}
	var inst struct{ Instances []any }
	e.okJSON(&inst, "instance", "list")
	if inst.Instances == nil || len(inst.Instances) != 0 {
		t.Errorf("instance list --output json = %+v", inst)
	}
	e.fails(1, []string{"InvalidInstanceID.Malformed"}, "instance", "list", "i-nothex")

	e.ok("subnet", "delete", subnet)
	e.fails(1, []string{"delete " + subnet + ": InvalidSubnetID.NotFound"}, "subnet", "delete", subnet)
	e.okJSON(&subnets, "subnet", "list", "--vpc-id", vpc)
	for _, sn := range subnets.Subnets {
		e.ok("subnet", "delete", sn.SubnetId)
	}
	e.ok("vpc", "delete", vpc)
	if rows := tableRows(e.ok("vpc", "list")); len(rows) != 0 {
		t.Errorf("vpc list after delete = %q", rows)
	}
}

func TestAuditCommands(t *testing.T) {
	e := startServer(t)
	e.ok("user", "create", "erin")
	var k struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey string }
	}
	e.okJSON(&k, "access-key", "create", "--user", "erin")
	e.secrets = append(e.secrets, k.AccessKey.SecretAccessKey)
	e.fails(1, []string{"EntityAlreadyExists"}, "user", "create", "erin")
	e.ok("vpc", "create", "--cidr", "10.8.0.0/16")
	t.Run("as erin", func(t *testing.T) {
		asKey(t, k.AccessKey.AccessKeyId, k.AccessKey.SecretAccessKey)
		e.fails(1, []string{"UnauthorizedOperation"}, "vpc", "list")
	})

	out := e.ok("audit", "lookup", "--event-name", "CreateUser")
	rows := tableRows(out)
	if !strings.HasPrefix(out, "TIME") || len(rows) < 3 {
		t.Fatalf("audit lookup --event-name CreateUser printed:\n%s", out)
	}
	// Newest first: the failed duplicate, then erin's creation, then the
	// bootstrap admin.
	if rows[0][1] != "CreateUser" || rows[0][2] != "admin" || rows[0][3] != "127.0.0.1" || rows[0][4] != "EntityAlreadyExists" || !strings.HasSuffix(rows[0][5], ":user/erin") {
		t.Errorf("newest CreateUser row = %q", rows[0])
	}
	if rows[1][4] != "-" {
		t.Errorf("the successful CreateUser shows an error: %q", rows[1])
	}

	rows = tableRows(e.ok("audit", "lookup", "--errors-only"))
	codes := map[string]bool{}
	for _, r := range rows {
		if r[4] == "-" {
			t.Errorf("--errors-only shows a success: %q", r)
		}
		codes[r[4]] = true
	}
	if !codes["EntityAlreadyExists"] || !codes["UnauthorizedOperation"] {
		t.Errorf("--errors-only misses failures; codes %v", codes)
	}

	var ev struct {
		Events []struct {
			EventName       string
			Username        string
			EventTime       time.Time
			CloudTrailEvent struct {
				ErrorCode    string `json:"errorCode"`
				UserIdentity struct {
					AccessKeyID string `json:"accessKeyId"`
				} `json:"userIdentity"`
			}
		}
	}
	e.okJSON(&ev, "audit", "lookup", "--user", "erin", "--start", "1h", "--max", "5")
	if len(ev.Events) != 1 || ev.Events[0].EventName != "DescribeVpcs" || ev.Events[0].CloudTrailEvent.ErrorCode != "UnauthorizedOperation" ||
		ev.Events[0].CloudTrailEvent.UserIdentity.AccessKeyID != k.AccessKey.AccessKeyId || time.Since(ev.Events[0].EventTime) > time.Hour {
		t.Errorf("audit lookup --user erin = %+v", ev)
	}
	// Two filters: one goes to the server, the other is applied locally.
	e.okJSON(&ev, "audit", "lookup", "--user", "admin", "--event-name", "CreateVpc")
	if len(ev.Events) != 1 || ev.Events[0].EventName != "CreateVpc" {
		t.Errorf("audit lookup --user admin --event-name CreateVpc = %+v", ev)
	}
	e.okJSON(&ev, "audit", "lookup", "--max", "2")
	if len(ev.Events) != 2 {
		t.Errorf("--max 2 returned %d events", len(ev.Events))
	}
	e.okJSON(&ev, "audit", "lookup", "--end", "2000-01-01")
	if len(ev.Events) != 0 {
		t.Errorf("--end 2000-01-01 returned %d events", len(ev.Events))
	}
	e.fails(2, []string{"--start", "RFC 3339"}, "audit", "lookup", "--start", "yesterday")
	e.fails(1, []string{"InvalidTimeRangeException"}, "audit", "lookup", "--start", "1h", "--end", "2h")

	// Verify, trusting the server's key and pinning the data dir's.
	out, errOut, code := e.run("audit", "verify")
	if code != 0 || out == "" || !strings.Contains(errOut, "--public-key") {
		t.Errorf("audit verify: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = e.run("audit", "verify", "--public-key", filepath.Join(e.dir, server.AuditPubFile))
	if code != 0 || errOut != "" {
		t.Errorf("audit verify --public-key: exit %d\n%s\n%s", code, out, errOut)
	}
	e.fails(1, []string{"no such file"}, "audit", "verify", "--public-key", filepath.Join(e.dir, "missing.pub"))

	// Export: one CloudTrail record per line, oldest first.
	export := e.ok("audit", "export")
	lines := strings.Split(strings.TrimRight(export, "\n"), "\n")
	var prev time.Time
	names := map[string]int{}
	for i, l := range lines {
		var rec struct {
			EventTime time.Time `json:"eventTime"`
			EventName string    `json:"eventName"`
			EventID   string    `json:"eventID"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.EventID == "" {
			t.Fatalf("export line %d is not a CloudTrail record: %v\n%s", i+1, err, l)
		}
		if rec.EventTime.Before(prev) {
			t.Errorf("export line %d goes back in time", i+1)
		}
		prev = rec.EventTime
		names[rec.EventName]++
	}
	if names["CreateUser"] != 3 || names["CreateAccessKey"] != 1 || names["LookupEvents"] == 0 || names["ExportAuditRecords"] == 0 {
		t.Errorf("export events: %v", names)
	}
	if out := e.ok("audit", "export", "--since", "2999-01-01T00:00:00Z"); out != "" {
		t.Errorf("export --since the future printed %d bytes", len(out))
	}
	if rows := tableRows(e.ok("audit", "export", "--since", "1h", "--output", "table")); len(rows) < len(lines) {
		t.Errorf("export --output table has %d rows, want at least %d", len(rows), len(lines))
	}

	e.noSecrets("the audit export", export)
	e.noSecrets("the server log", e.logs.String())
}

// TestAuditVerifyDigests polls until the server has signed a digest over
// the new records, then verifies with it.
func TestAuditVerifyDigests(t *testing.T) {
	e := startServer(t)
	e.ok("user", "create", "finn")
	ctx := context.Background()
	cfg, err := client.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(30 * time.Second)
	for {
		ds, err := client.ListAuditDigests(ctx, cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The digest must cover the CreateUser call (record 2 at least;
		// record 1 is the admin's bootstrap).
		if len(ds) > 0 && ds[len(ds)-1].Seq >= 2 {
			break
		}
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatal("the server signed no digest within 30s")
		}
	}
	out, errOut, code := e.run("audit", "verify", "--public-key", filepath.Join(e.dir, server.AuditPubFile), "--output", "json")
	if code != 0 || !json.Valid([]byte(out)) {
		t.Errorf("audit verify --output json: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestAuditVerifyDetectsTampering alters and removes records behind the
// server's back and checks that verify fails, naming them.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	e := startServer(t)
	e.ok("user", "create", "erin", "finn", "gus")
	// The server's database; the test opens it the way an intruder with
	// access to the data directory would.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "postern.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seqOf := func(user string) int64 {
		t.Helper()
		var seq int64
		err := db.QueryRow(`SELECT seq FROM audit_records WHERE event_name = 'CreateUser' AND CAST(body AS TEXT) LIKE ?`, `%"UserName":"`+user+`"%`).Scan(&seq)
		if err != nil {
			t.Fatalf("find the CreateUser record of %s: %v", user, err)
		}
		return seq
	}
	pub := filepath.Join(e.dir, server.AuditPubFile)
	e.ok("audit", "verify", "--public-key", pub)

	altered := seqOf("finn")
	if _, err := db.Exec(`UPDATE audit_records SET body = CAST(replace(CAST(body AS TEXT), '"finn"', '"fred"') AS BLOB) WHERE seq = ?`, altered); err != nil {
		t.Fatal(err)
	}
	removed := seqOf("gus")
	if _, err := db.Exec(`DELETE FROM audit_records WHERE seq = ?`, removed); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := e.run("audit", "verify", "--public-key", pub)
	if code != 1 || errOut != "" {
		t.Errorf("audit verify of a tampered trail: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		fmt.Sprintf("record %d ", altered), "altered",
		fmt.Sprintf("record %d", removed), "removed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report does not say %q:\n%s", want, out)
		}
	}
	var rep struct {
		OK       bool
		Problems []struct{ Seq int64 }
	}
	out, _, code = e.run("audit", "verify", "--public-key", pub, "--output", "json")
	if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || len(rep.Problems) == 0 {
		t.Errorf("audit verify --output json: exit %d\n%s", code, out)
	}
}

func TestHelp(t *testing.T) {
	isolateAWS(t)
	e := &testEnv{t: t}
	// Commands that run on a host rather than call the API take no --output.
	hostSide := map[string]bool{"agent": true, "endpoint run": true}
	for _, c := range commands() {
		out, errOut, code := e.run(c.name, "--help")
		if code != 0 || errOut != "" {
			t.Errorf("postern %s --help: exit %d\n%s%s", c.name, code, out, errOut)
			continue
		}
		if !strings.Contains(out, "Verbs:") {
			// A command without verbs shows its own usage and example.
			if !strings.Contains(out, "Example:\n  ") {
				t.Errorf("postern %s --help has no example:\n%s", c.name, out)
			}
			continue
		}
		verbs := regexp.MustCompile(`(?m)^  (\S+)\s`).FindAllStringSubmatch(out, -1)
		if len(verbs) == 0 {
			t.Errorf("postern %s --help lists no verbs", c.name)
		}
		for _, v := range verbs {
			out, errOut, code := e.run(c.name, v[1], "--help")
			if code != 0 || !strings.Contains(out, "Example:\n  ") || (!hostSide[c.name] && !hostSide[c.name+" "+v[1]] && !strings.Contains(out, "-output")) || errOut != "" {
				t.Errorf("postern %s %s --help: exit %d\n%s%s", c.name, v[1], code, out, errOut)
			}
		}
	}
	if out, _, _ := e.run("policy", "simulate", "--help"); !strings.Contains(out, "3 when any") {
		t.Errorf("policy simulate --help does not document its exit status:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	isolateAWS(t)
	e := &testEnv{t: t}
	e.fails(2, []string{"flag provided but not defined: -bogus"}, "user", "list", "--bogus")
	e.fails(2, []string{"--output must be table or json"}, "vpc", "list", "--output", "yaml")
	e.fails(2, []string{"unexpected argument"}, "user", "list", "extra")
	e.fails(2, []string{"unknown verb"}, "vpc", "explode")
	// No server configured: one clear line that says what to do.
	e.fails(1, []string{"AWS_ENDPOINT_URL", "postern env --data-dir"}, "user", "list")
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		tags string
	}{
		{[]string{"a", "--tag", "k=v", "b"}, "a b", "k=v"},
		{[]string{"--tag", "k=v", "a", "--tag=x=y"}, "a", "k=v,x=y"},
		{[]string{"a", "--", "--tag", "b"}, "a --tag b", ""},
		{nil, "", ""},
	} {
		m := &Main{Stdout: &bytes.Buffer{}}
		fs := m.newClientFlagSet("t", "t", "")
		tags := tagFlag(fs, "")
		pos, err := fs.parseArgs(tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || tags.String() != tc.tags {
			t.Errorf("parseArgs(%q) = %q, tags %q, %v; want %q, %q", tc.args, pos, tags.String(), err, tc.pos, tc.tags)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-02-01T10:00:00Z":      time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC),
		"2026-02-01T10:00:00+02:00": time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC),
		"2026-02-01":                time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
		"90m":                       now.Add(-90 * time.Minute),
		"0s":                        now,
	} {
		got, err := parseWhen("start", in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1h", "yesterday", "2026-13-01"} {
		if _, err := parseWhen("start", in, now); err == nil {
			t.Errorf("parseWhen(%q) succeeded", in)
		}
	}
}
