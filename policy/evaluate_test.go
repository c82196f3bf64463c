package policy

import (
	"fmt"
	"testing"
)

func mustParse(t testing.TB, doc string) *Document {
	t.Helper()
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	return d
}

const (
	sendKey  = "ec2-instance-connect:SendSSHPublicKey"
	instance = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
)

func TestEvaluateDenyPrecedence(t *testing.T) {
	allow := `{"Version":"2012-10-17","Statement":[
		{"Sid":"Other","Effect":"Allow","Action":"ec2:DescribeVpcs","Resource":"*"},
		{"Sid":"Connect","Effect":"Allow","Action":"ec2-instance-connect:*","Resource":"*"},
		{"Sid":"Connect2","Effect":"Allow","Action":"*","Resource":"*"}]}`
	denyRoot := `{"Version":"2012-10-17","Statement":[
		{"Sid":"Unrelated","Effect":"Deny","Action":"iam:*","Resource":"*"},
		{"Sid":"NoRoot","Effect":"Deny","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*",
		 "Condition":{"StringEquals":{"ec2:osuser":"root"}}}]}`
	denyFirst := `{"Statement":[
		{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"ec2:osuser":"root"}}},
		{"Sid":"Late","Effect":"Allow","Action":"*","Resource":"*"}]}`
	allowFirst := `{"Statement":[
		{"Sid":"Early","Effect":"Allow","Action":"*","Resource":"*"},
		{"Sid":"Late","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"ec2:osuser":"root"}}}]}`
	docs := map[string]*Document{}
	for name, doc := range map[string]string{"allow": allow, "deny-root": denyRoot, "deny-first": denyFirst, "allow-first": allowFirst} {
		docs[name] = mustParse(t, doc)
	}
	named := func(names ...string) []NamedDocument {
		var out []NamedDocument
		for _, n := range names {
			out = append(out, NamedDocument{Name: n, Doc: docs[n]})
		}
		return out
	}
	root := Request{Action: sendKey, Resource: instance, Context: ctx("+ec2:osuser", "root")}
	user := Request{Action: sendKey, Resource: instance, Context: ctx("+ec2:osuser", "ec2-user")}
	tests := []struct {
		name     string
		policies []NamedDocument
		req      Request
		want     Decision
	}{
		{"allow names first allowing statement", named("allow"), user, Decision{Allow, "allow", "Connect", 1}},
		{"deny in later policy", named("allow", "deny-root"), root, Decision{ExplicitDeny, "deny-root", "NoRoot", 1}},
		{"deny in earlier policy", named("deny-root", "allow"), root, Decision{ExplicitDeny, "deny-root", "NoRoot", 1}},
		{"deny not applying", named("deny-root", "allow"), user, Decision{Allow, "allow", "Connect", 1}},
		{"deny before allow in a policy", named("deny-first"), root, Decision{ExplicitDeny, "deny-first", "", 0}},
		{"deny after allow in a policy", named("allow-first"), root, Decision{ExplicitDeny, "allow-first", "Late", 1}},
		{"allow after a deny that does not apply", named("deny-first"), user, Decision{Allow, "deny-first", "Late", 1}},
		{"deny alone is implicit deny", named("deny-root"), user, Decision{}},
		{"no policies", nil, user, Decision{}},
		{"nil document skipped", []NamedDocument{{Name: "nil"}, {Name: "allow", Doc: docs["allow"]}}, user, Decision{Allow, "allow", "Connect", 1}},
		{"first matching deny across policies", named("allow-first", "deny-first"), root, Decision{ExplicitDeny, "allow-first", "Late", 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Evaluate(tt.policies, tt.req); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEvaluateActionsAndResources(t *testing.T) {
	tests := []struct {
		name     string
		stmt     string // one statement, without Effect
		action   string
		resource string
		ctx      map[string][]string
		want     bool
	}{
		{"action exact", `"Action":"ec2:DescribeVpcs","Resource":"*"`, "ec2:DescribeVpcs", "*", nil, true},
		{"action case-insensitive", `"Action":"EC2:describe*","Resource":"*"`, "ec2:DescribeVpcs", "*", nil, true},
		{"action prefix", `"Action":"ec2:Describe*","Resource":"*"`, "ec2:RunInstances", "*", nil, false},
		{"action ?", `"Action":"ec2:Describe?pcs","Resource":"*"`, "ec2:DescribeVpcs", "*", nil, true},
		{"action * inside the name", `"Action":"ec2:*vpcs","Resource":"*"`, "ec2:DescribeVpcs", "*", nil, true},
		{"action list", `"Action":["iam:GetUser","ec2:DescribeVpcs"],"Resource":"*"`, "ec2:DescribeVpcs", "*", nil, true},
		{"action star", `"Action":"*","Resource":"*"`, "anything:AtAll", "*", nil, true},
		{"action no prefix match", `"Action":"ec2:Describe","Resource":"*"`, "ec2:DescribeVpcs", "*", nil, false},
		{"NotAction excludes", `"NotAction":"iam:*","Resource":"*"`, "iam:CreateUser", "*", nil, false},
		{"NotAction includes the rest", `"NotAction":["iam:*","sts:*"],"Resource":"*"`, "ec2:DescribeVpcs", "*", nil, true},
		{"resource star", `"Action":"*","Resource":"*"`, "ec2:X", instance, nil, true},
		{"resource wildcards span ':' and '/'", `"Action":"*","Resource":"arn:aws:ec2:*/i-0123456789abcdef0"`, "ec2:X", instance, nil, true},
		{"resource exact", `"Action":"*","Resource":"` + instance + `"`, "ec2:X", instance, nil, true},
		{"resource case-sensitive", `"Action":"*","Resource":"arn:aws:ec2:*:*:Instance/*"`, "ec2:X", instance, nil, false},
		{"resource ?", `"Action":"*","Resource":"arn:aws:ec2:us-east-?:*:instance/*"`, "ec2:X", instance, nil, true},
		{"resource ? needs one character", `"Action":"*","Resource":"arn:aws:ec2:us-east-1?:*:instance/*"`, "ec2:X", instance, nil, false},
		{"resource pattern vs *", `"Action":"*","Resource":"arn:aws:ec2:*"`, "ec2:X", "*", nil, false},
		{"resource list", `"Action":"*","Resource":["arn:aws:s3:::b","arn:aws:ec2:*"]`, "ec2:X", instance, nil, true},
		{"NotResource excludes", `"Action":"*","NotResource":"arn:aws:ec2:*:*:instance/*"`, "ec2:X", instance, nil, false},
		{"NotResource includes the rest", `"Action":"*","NotResource":"arn:aws:iam::*:user/*"`, "ec2:X", instance, nil, true},
		{"NotAction and NotResource", `"NotAction":"iam:*","NotResource":"arn:aws:iam::*:*"`, "ec2:X", instance, nil, true},

		{"variable", `"Action":"*","Resource":"arn:aws:iam::123456789012:user/${aws:username}"`, "iam:GetUser",
			"arn:aws:iam::123456789012:user/alice", ctx("+aws:username", "alice"), true},
		{"variable other user", `"Action":"*","Resource":"arn:aws:iam::123456789012:user/${aws:username}"`, "iam:GetUser",
			"arn:aws:iam::123456789012:user/bob", ctx("+aws:username", "alice"), false},
		{"variable absent", `"Action":"*","Resource":"arn:aws:iam::123456789012:user/${aws:username}"`, "iam:GetUser",
			"arn:aws:iam::123456789012:user/", ctx(), false},
		{"variable absent, other resource", `"Action":"*","Resource":["arn:aws:iam::1:user/${aws:username}","arn:aws:iam::1:user/shared"]`, "iam:GetUser",
			"arn:aws:iam::1:user/shared", ctx(), true},
		{"variable default", `"Action":"*","Resource":"arn:aws:iam::1:user/${aws:username, 'guest'}"`, "iam:GetUser",
			"arn:aws:iam::1:user/guest", ctx(), true},
		{"variable default unused", `"Action":"*","Resource":"arn:aws:iam::1:user/${aws:username, 'guest'}"`, "iam:GetUser",
			"arn:aws:iam::1:user/guest", ctx("+aws:username", "alice"), false},
		{"variable value literal", `"Action":"*","Resource":"arn:aws:iam::1:user/${aws:username}"`, "iam:GetUser",
			"arn:aws:iam::1:user/alice", ctx("+aws:username", "*"), false},
		{"two variables and a wildcard", `"Action":"*","Resource":"arn:aws:ec2:*:${aws:PrincipalAccount}:instance/${ec2:osuser}-*"`, "x:Y",
			"arn:aws:ec2:eu-west-1:123456789012:instance/ubuntu-7", ctx("+aws:principalaccount", "123456789012", "+ec2:osuser", "ubuntu"), true},
		{"escape ${*}", `"Action":"*","Resource":"arn:aws:s3:::a${*}b"`, "s3:X", "arn:aws:s3:::a*b", nil, true},
		{"escape ${*} is not a wildcard", `"Action":"*","Resource":"arn:aws:s3:::a${*}b"`, "s3:X", "arn:aws:s3:::axb", nil, false},
		{"escape ${?}", `"Action":"*","Resource":"arn:aws:s3:::a${?}b"`, "s3:X", "arn:aws:s3:::a?b", nil, true},
		{"escape ${$}", `"Action":"*","Resource":"arn:aws:s3:::a${$}{b}"`, "s3:X", "arn:aws:s3:::a${b}", nil, true},
		{"NotResource with absent variable excludes nothing", `"Action":"*","NotResource":"arn:aws:iam::1:user/${aws:username}"`, "iam:X",
			"arn:aws:iam::1:user/alice", ctx(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow",`+tt.stmt+`}}`)
			got := Evaluate([]NamedDocument{{Name: "p", Doc: d}}, Request{Action: tt.action, Resource: tt.resource, Context: tt.ctx})
			if (got.Effect == Allow) != tt.want {
				t.Errorf("%s on %s: got %v, want allowed=%v", tt.action, tt.resource, got, tt.want)
			}
		})
	}
}

// Without Version 2012-10-17 a Resource's "${...}" is literal text.
func TestEvaluateResourceVariablesOldVersion(t *testing.T) {
	d := mustParse(t, `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:iam::1:user/${aws:username}"}}`)
	for res, want := range map[string]bool{
		"arn:aws:iam::1:user/alice":           false,
		"arn:aws:iam::1:user/${aws:username}": true,
	} {
		got := Evaluate([]NamedDocument{{Name: "p", Doc: d}}, Request{Action: "iam:GetUser", Resource: res, Context: ctx("+aws:username", "alice")})
		if (got.Effect == Allow) != want {
			t.Errorf("%s: got %v, want allowed=%v", res, got, want)
		}
	}
}

func TestEffectAndDecisionString(t *testing.T) {
	for e, want := range map[Effect]string{ImplicitDeny: "implicitDeny", Allow: "allowed", ExplicitDeny: "explicitDeny", 7: "Effect(7)"} {
		if got := e.String(); got != want {
			t.Errorf("Effect(%d).String() = %q, want %q", int(e), got, want)
		}
	}
	for d, want := range map[Decision]string{
		{}: "implicitDeny: no statement allows the request",
		{Effect: ExplicitDeny, PolicyName: "deny-root", Sid: "NoRoot", StatementIndex: 1}: `explicitDeny by policy "deny-root" statement "NoRoot" (#1)`,
		{Effect: Allow, PolicyName: "group/ops/connect", StatementIndex: 0}:               `allowed by policy "group/ops/connect" statement #0`,
	} {
		if got := d.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", d, got, want)
		}
	}
}

// benchPolicies are five policies of the shape Postern's users carry.
var benchPolicies = []string{
	`{"Version":"2012-10-17","Statement":[
		{"Sid":"ReadOnly","Effect":"Allow","Action":["ec2:Describe*","ec2-instance-connect:List*"],"Resource":"*"}]}`,
	`{"Version":"2012-10-17","Statement":[
		{"Sid":"Connect","Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey",
		 "Resource":"arn:aws:ec2:us-east-1:123456789012:instance/*",
		 "Condition":{"StringEquals":{"ec2:osuser":["ec2-user","ubuntu","${aws:username}"]},
		              "IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]},
		              "StringLike":{"aws:ResourceTag/env":"dev*"}}}]}`,
	`{"Version":"2012-10-17","Statement":[
		{"Sid":"NoRoot","Effect":"Deny","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*",
		 "Condition":{"StringEqualsIgnoreCase":{"ec2:osuser":"root"}}},
		{"Sid":"OfficeHours","Effect":"Deny","Action":"*","Resource":"*",
		 "Condition":{"DateGreaterThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}}]}`,
	`{"Version":"2012-10-17","Statement":[
		{"Sid":"OwnKeys","Effect":"Allow","Action":["iam:*AccessKey*","iam:GetUser"],
		 "Resource":"arn:aws:iam::123456789012:user/${aws:username}"},
		{"Sid":"MFA","Effect":"Deny","NotAction":["iam:Get*","iam:List*"],"Resource":"*",
		 "Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"},"Null":{"aws:TokenIssueTime":"false"}}}]}`,
	`{"Version":"2012-10-17","Statement":[
		{"Sid":"Endpoints","Effect":"Allow","Action":"ec2-instance-connect:OpenTunnel",
		 "Resource":"arn:aws:ec2:*:123456789012:instance-connect-endpoint/*",
		 "Condition":{"NumericLessThanEquals":{"ec2-instance-connect:maxTunnelDuration":"3600"},
		              "ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/*"}}}]}`,
}

func benchSetup(tb testing.TB) ([]NamedDocument, Request) {
	var docs []NamedDocument
	for i, p := range benchPolicies {
		docs = append(docs, NamedDocument{Name: fmt.Sprintf("p%d", i), Doc: mustParse(tb, p)})
	}
	req := Request{
		Action:   sendKey,
		Resource: instance,
		Context: map[string][]string{
			"aws:username":               {"alice"},
			"aws:userid":                 {"AIDAEXAMPLE"},
			"aws:principalarn":           {"arn:aws:iam::123456789012:user/alice"},
			"aws:currenttime":            {"2026-03-01T10:00:00Z"},
			"aws:epochtime":              {"1772359200"},
			"aws:sourceip":               {"10.1.2.3"},
			"aws:securetransport":        {"true"},
			"aws:resourcetag/env":        {"dev-eu"},
			"ec2:osuser":                 {"ec2-user"},
			"aws:multifactorauthpresent": {"true"},
		},
	}
	return docs, req
}

func TestBenchScenario(t *testing.T) {
	docs, req := benchSetup(t)
	want := Decision{Effect: Allow, PolicyName: "p1", Sid: "Connect"}
	if got := Evaluate(docs, req); got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
	req.Context["ec2:osuser"] = []string{"ROOT"}
	if got := Evaluate(docs, req); got.Effect != ExplicitDeny || got.Sid != "NoRoot" {
		t.Fatalf("root: got %v", got)
	}
	req.Context["ec2:osuser"] = []string{"alice"} // ${aws:username}
	if got := Evaluate(docs, req); got != want {
		t.Fatalf("own name: got %v, want %v", got, want)
	}
	req = Request{Action: "iam:CreateAccessKey", Resource: "arn:aws:iam::123456789012:user/alice", Context: req.Context}
	if got := Evaluate(docs, req); got.Effect != Allow || got.Sid != "OwnKeys" {
		t.Fatalf("own keys: got %v", got)
	}
}

// Evaluate runs on every API request: with lower-case context keys it
// must not allocate.
func TestEvaluateAllocations(t *testing.T) {
	docs, req := benchSetup(t)
	if n := testing.AllocsPerRun(100, func() { Evaluate(docs, req) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per call, want 0", n)
	}
}

// Context keys in any case work, at the price of one copy of the context.
func TestEvaluateMixedCaseContext(t *testing.T) {
	docs, req := benchSetup(t)
	mixed := map[string][]string{}
	for k, v := range req.Context {
		mixed[k] = v
	}
	delete(mixed, "aws:resourcetag/env")
	mixed["aws:ResourceTag/Env"] = []string{"dev-eu"}
	req.Context = mixed
	if got := Evaluate(docs, req); got.Effect != Allow || got.Sid != "Connect" {
		t.Fatalf("got %v", got)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	docs, req := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(docs, req)
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range benchPolicies {
			if _, err := Parse([]byte(p)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A Document is shared by all requests of its users: Evaluate must not
// write to it. Run with -race.
func TestEvaluateConcurrent(t *testing.T) {
	docs, req := benchSetup(t)
	done := make(chan Decision)
	for range 4 {
		go func() {
			var d Decision
			for range 200 {
				d = Evaluate(docs, req)
			}
			done <- d
		}()
	}
	for range 4 {
		if d := <-done; d.Effect != Allow {
			t.Errorf("got %v", d)
		}
	}
}
