package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/postern-dev/postern"
)

func TestParseErrors(t *testing.T) {
	// stmt wraps statements into a 2012-10-17 document.
	stmt := func(s ...string) string {
		return `{"Version":"2012-10-17","Statement":[` + strings.Join(s, ",") + `]}`
	}
	const ok = `{"Effect":"Allow","Action":"*","Resource":"*"}`
	cond := func(c string) string {
		return stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":` + c + `}`)
	}
	tests := []struct {
		doc  string
		want string
	}{
		{``, `invalid JSON at byte 0: unexpected end of document`},
		{`{"Version":"2012-10-17",}`, `invalid JSON at byte 24: `},
		{`{"Version":"2012-10-17","Statement":[`, `invalid JSON`},
		{`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}} {}`, `invalid JSON at byte 62: unexpected data after the policy object`},
		{`[]`, `policy document must be a JSON object, got an array`},
		{`"x"`, `policy document must be a JSON object, got a string`},
		{`{"Version":"2012-10-17","Statment":[]}`, `unknown field "Statment"`},
		{`{"version":"2012-10-17","Statement":[]}`, `unknown field "version" (field names are case-sensitive: "Version")`},
		{`{"Version":"2012-10-17","Principal":"*","Statement":[]}`, `unknown field "Principal"`},
		{`{"Version":"2013-01-01","Statement":[]}`, `Version: unsupported "2013-01-01"`},
		{`{"Version":2012,"Statement":[]}`, `Version: must be a string, got a number`},
		{`{"Version":"2012-10-17","Id":1,"Statement":[]}`, `Id: must be a string, got a number`},
		{`{"Version":"2012-10-17"}`, `Statement: missing`},
		{`{"Version":"2012-10-17","Statement":[]}`, `Statement: empty`},
		{`{"Version":"2012-10-17","Version":"2012-10-17","Statement":[]}`, `duplicate field "Version"`},
		{stmt(`"x"`), `Statement[0]: must be an object, got a string`},
		{stmt(ok, `{"Effect":"Alow","Action":"*","Resource":"*"}`), `Statement[1].Effect: must be "Allow" or "Deny", got "Alow"`},
		{stmt(`{"Effect":true,"Action":"*","Resource":"*"}`), `Statement[0].Effect: must be "Allow" or "Deny", got a boolean`},
		{stmt(`{"Action":"*","Resource":"*"}`), `Statement[0].Effect: missing`},
		{stmt(`{"Effect":"Allow","effect":"Allow","Action":"*","Resource":"*"}`), `Statement[0]: unknown field "effect" (field names are case-sensitive: "Effect")`},
		{stmt(`{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}`), `Statement[0]: duplicate field "Effect"`},
		{stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}`), `Statement[0].Principal: not allowed in an identity policy`},
		{stmt(`{"Effect":"Allow","NotPrincipal":{"AWS":"*"},"Action":"*","Resource":"*"}`), `Statement[0].NotPrincipal: not allowed in an identity policy`},
		{stmt(`{"Effect":"Allow","Actoin":"*","Resource":"*"}`), `Statement[0]: unknown field "Actoin"`},
		{stmt(`{"Sid":"A b","Effect":"Allow","Action":"*","Resource":"*"}`), `Statement[0].Sid: "A b" must contain only letters and digits`},
		{stmt(`{"Sid":7,"Effect":"Allow","Action":"*","Resource":"*"}`), `Statement[0].Sid: must be a string, got a number`},
		{stmt(`{"Sid":"S","Effect":"Allow","Action":"*","Resource":"*"}`, `{"Sid":"S","Effect":"Deny","Action":"*","Resource":"*"}`), `Statement[1].Sid: duplicate "S" (also Statement[0])`},
		{stmt(`{"Effect":"Allow","Action":"*","NotAction":"*","Resource":"*"}`), `Statement[0]: Action and NotAction are both set`},
		{stmt(`{"Effect":"Allow","Resource":"*"}`), `Statement[0].Action: missing`},
		{stmt(`{"Effect":"Allow","Action":[],"Resource":"*"}`), `Statement[0].Action: empty`},
		{stmt(`{"Effect":"Allow","Action":["ec2:X",3],"Resource":"*"}`), `Statement[0].Action[1]: must be a string, got a number`},
		{stmt(`{"Effect":"Allow","Action":{},"Resource":"*"}`), `Statement[0].Action: must be a string or an array of strings, got an object`},
		{stmt(`{"Effect":"Allow","Action":"DescribeVpcs","Resource":"*"}`), `Statement[0].Action: "DescribeVpcs" is not "service:action" or "*"`},
		{stmt(`{"Effect":"Allow","NotAction":["ec2:X","ec2:"],"Resource":"*"}`), `Statement[0].NotAction[1]: "ec2:" is not "service:action" or "*"`},
		{stmt(ok, ok, `{"Effect":"Allow","Action":"*"}`), `Statement[2].Resource: missing`},
		{stmt(`{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}`), `Statement[0]: Resource and NotResource are both set`},
		{stmt(`{"Effect":"Allow","Action":"*","Resource":"i-0123"}`), `Statement[0].Resource: "i-0123" is not an ARN or "*"`},
		{stmt(`{"Effect":"Allow","Action":"*","NotResource":["*",""]}`), `Statement[0].NotResource[1]: "" is not an ARN or "*"`},
		{stmt(`{"Effect":"Allow","Action":"*","Resource":"arn:aws:iam::1:user/${aws:username"}`), `Statement[0].Resource: policy variable "${aws:username" is missing its closing '}'`},
		{cond(`[]`), `Statement[0].Condition: must be an object, got an array`},
		{cond(`{"StringEq":{"a:b":"c"}}`), `Statement[0].Condition: unknown operator "StringEq"`},
		{cond(`{"stringEquals":{"a:b":"c"}}`), `Statement[0].Condition: unknown operator "stringEquals" (operator names are case-sensitive: "StringEquals")`},
		{cond(`{"ForSomeValues:StringEquals":{"a:b":"c"}}`), `unknown operator "ForSomeValues:StringEquals"`},
		{cond(`{"NullIfExists":{"a:b":"true"}}`), `unknown operator "NullIfExists" (Null takes no IfExists suffix)`},
		{cond(`{"ForAnyValue:Null":{"a:b":"true"}}`), `unknown operator "ForAnyValue:Null" (Null takes no ForAnyValue: or ForAllValues: prefix)`},
		{cond(`{"StringEquals":"x"}`), `Statement[0].Condition.StringEquals: must be an object of condition keys, got a string`},
		{cond(`{"StringEquals":{"a:b":"c","a:b":"d"}}`), `Statement[0].Condition.StringEquals: duplicate field "a:b"`},
		{cond(`{"StringEquals":{"":"c"}}`), `Statement[0].Condition.StringEquals: empty condition key`},
		{cond(`{"StringEquals":{"a:b":[]}}`), `Statement[0].Condition.StringEquals.a:b: empty`},
		{cond(`{"StringEquals":{"a:b":null}}`), `Statement[0].Condition.StringEquals.a:b: must be a string, number or boolean, got null`},
		{cond(`{"StringEquals":{"a:b":["x",{}]}}`), `Statement[0].Condition.StringEquals.a:b[1]: must be a string, number or boolean, got an object`},
		{cond(`{"StringEquals":{"a:b":"${oops"}}`), `Statement[0].Condition.StringEquals.a:b: policy variable "${oops" is missing its closing '}'`},
		{cond(`{"NumericLessThan":{"aws:EpochTime":"abc"}}`), `Statement[0].Condition.NumericLessThan.aws:EpochTime: "abc" is not a number`},
		{cond(`{"NumericLessThan":{"x:n":["1","NaN"]}}`), `Statement[0].Condition.NumericLessThan.x:n[1]: "NaN" is not a number`},
		{cond(`{"NumericEquals":{"x:n":"0x10"}}`), `"0x10" is not a number`},
		{cond(`{"NumericEquals":{"x:n":"${aws:n}"}}`), `"${aws:n}" is not a number`},
		{cond(`{"DateLessThan":{"aws:CurrentTime":"tomorrow"}}`), `Statement[0].Condition.DateLessThan.aws:CurrentTime: "tomorrow" is not a date`},
		{cond(`{"DateLessThan":{"aws:CurrentTime":"2026-13-01"}}`), `"2026-13-01" is not a date`},
		{cond(`{"Bool":{"aws:SecureTransport":"yes"}}`), `Statement[0].Condition.Bool.aws:SecureTransport: must be "true" or "false", got "yes"`},
		{cond(`{"Null":{"x:k":1}}`), `Statement[0].Condition.Null.x:k: must be "true" or "false", got "1"`},
		{cond(`{"BinaryEquals":{"x:k":"not base64!"}}`), `Statement[0].Condition.BinaryEquals.x:k: "not base64!" is not base64`},
		{cond(`{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}`), `Statement[0].Condition.IpAddress.aws:SourceIp: "10.0.0.0/33" is not an IP address or CIDR block`},
		{cond(`{"NotIpAddress":{"aws:SourceIp":["10.0.0.1","example.com"]}}`), `Statement[0].Condition.NotIpAddress.aws:SourceIp[1]: "example.com" is not an IP address`},
		{cond(`{"ArnLike":{"aws:SourceArn":"i-0123"}}`), `Statement[0].Condition.ArnLike.aws:SourceArn: "i-0123" is not an ARN`},
		{`{"Statement":[` + strings.Repeat(" ", MaxSize) + `]}`, `policy document is 10256 bytes, more than the limit of 10240`},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), `nested more than 16 deep`},
	}
	for _, tt := range tests {
		d, err := Parse([]byte(tt.doc))
		if err == nil {
			t.Errorf("Parse(%.80s): no error, want %q (got %+v)", tt.doc, tt.want, d)
			continue
		}
		var pe *postern.Error
		if !errors.As(err, &pe) || pe.Kind != postern.KindInvalid || pe.Code != "MalformedPolicyDocument" {
			t.Errorf("Parse(%.80s): error %#v is not an invalid MalformedPolicyDocument *postern.Error", tt.doc, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%.80s):\n got  %s\n want %s", tt.doc, err, tt.want)
		}
	}
}

// Errors do not depend on the order of members in a Condition block.
func TestParseErrorDeterministic(t *testing.T) {
	doc := `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bogus":{},"Alsobogus":{}}}}`
	for range 20 {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), `"Alsobogus"`) {
			t.Fatalf("got %v", err)
		}
	}
}

func TestParseDocument(t *testing.T) {
	d := mustParse(t, `{
		"Version": "2012-10-17",
		"Id": "connect",
		"Statement": [
			{"Sid": "Connect", "Effect": "Allow",
			 "Action": "ec2-instance-connect:SendSSHPublicKey",
			 "Resource": ["arn:aws:ec2:*:*:instance/*"],
			 "Condition": {
				"StringEquals": {"ec2:osuser": ["ec2-user", 42, true]},
				"Bool": {"aws:SecureTransport": true},
				"ForAnyValue:StringLikeIfExists": {"aws:TagKeys": "env*", "aws:ResourceTag/team": "ops"}
			 }},
			{"Effect": "Deny", "NotAction": ["iam:*", "sts:*"], "NotResource": "arn:aws:iam::*:user/${aws:username}"}
		]}`)
	want := &Document{
		Version: "2012-10-17",
		ID:      "connect",
		Statements: []Statement{
			{
				Sid: "Connect", Effect: "Allow",
				Action:   []string{"ec2-instance-connect:SendSSHPublicKey"},
				Resource: []string{"arn:aws:ec2:*:*:instance/*"},
				Conditions: []Condition{
					{Operator: "Bool", Key: "aws:SecureTransport", Values: []string{"true"}},
					{Operator: "ForAnyValue:StringLikeIfExists", Key: "aws:ResourceTag/team", Values: []string{"ops"}},
					{Operator: "ForAnyValue:StringLikeIfExists", Key: "aws:TagKeys", Values: []string{"env*"}},
					{Operator: "StringEquals", Key: "ec2:osuser", Values: []string{"ec2-user", "42", "true"}},
				},
			},
			{
				Effect:      "Deny",
				NotAction:   []string{"iam:*", "sts:*"},
				NotResource: []string{"arn:aws:iam::*:user/${aws:username}"},
			},
		},
	}
	if err := equalExported(d, want); err != "" {
		t.Error(err)
	}

	// A single statement object and no Version.
	d = mustParse(t, `{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}`)
	if d.Version != "" || len(d.Statements) != 1 || d.Statements[0].Effect != "Deny" {
		t.Errorf("got %+v", d)
	}
	if got := Evaluate([]NamedDocument{{Name: "x", Doc: d}}, Request{Action: "a:b", Resource: "*"}); got.Effect != ExplicitDeny {
		t.Errorf("got %v", got)
	}

	// The size limit is inclusive.
	doc := `{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}`
	doc += strings.Repeat(" ", MaxSize-len(doc))
	if _, err := Parse([]byte(doc)); err != nil {
		t.Errorf("document of exactly MaxSize bytes: %v", err)
	}
}

// equalExported compares the exported fields of two documents.
func equalExported(got, want *Document) string {
	strip := func(d *Document) Document {
		out := Document{Version: d.Version, ID: d.ID}
		for _, s := range d.Statements {
			c := Statement{Sid: s.Sid, Effect: s.Effect, Action: s.Action, NotAction: s.NotAction, Resource: s.Resource, NotResource: s.NotResource}
			for _, k := range s.Conditions {
				c.Conditions = append(c.Conditions, Condition{Operator: k.Operator, Key: k.Key, Values: k.Values})
			}
			out.Statements = append(out.Statements, c)
		}
		return out
	}
	g, w := strip(got), strip(want)
	if !reflect.DeepEqual(g, w) {
		return "got  " + sprint(g) + "\nwant " + sprint(w)
	}
	return ""
}

func sprint(d Document) string {
	var b strings.Builder
	b.WriteString(d.Version + " " + d.ID)
	for _, s := range d.Statements {
		b.WriteString("\n  " + s.Sid + " " + s.Effect + " A=" + strings.Join(s.Action, ",") + " NA=" + strings.Join(s.NotAction, ",") +
			" R=" + strings.Join(s.Resource, ",") + " NR=" + strings.Join(s.NotResource, ","))
		for _, c := range s.Conditions {
			b.WriteString("\n    " + c.Operator + " " + c.Key + " " + strings.Join(c.Values, ","))
		}
	}
	return b.String()
}
