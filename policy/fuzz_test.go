package policy

import (
	"errors"
	"testing"

	"github.com/postern-dev/postern"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// a MalformedPolicyDocument, and that a document that parses evaluates
// without panicking, whatever the request.
func FuzzParse(f *testing.F) {
	for _, p := range benchPolicies {
		f.Add([]byte(p), sendKey, instance, "alice")
	}
	f.Add([]byte(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`), "a:b", "*", "")
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotAction":"iam:*","NotResource":"arn:aws:iam::*:user/${aws:username, 'x''y'}${*}",`+
		`"Condition":{"ForAllValues:StringNotLikeIfExists":{"aws:TagKeys":["a?*","${x:y}"]},"Null":{"aws:TokenIssueTime":true},`+
		`"NotIpAddress":{"aws:SourceIp":["::1/128","10.0.0.0/8"]},"ArnNotLike":{"aws:SourceArn":"arn:aws:*:*:*:*"},`+
		`"DateLessThanEquals":{"aws:CurrentTime":[1767225600,"2026-01-01"]},"BinaryEquals":{"x:b":"AA=="},"NumericNotEquals":{"x:n":-1.5}}}]}`),
		"iam:GetUser", "arn:aws:iam::1:user/x", "10.1.2.3")
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEq":{}}}]}`), "", "", "")
	f.Add([]byte(`[[[[{"x":`), "", "", "")

	f.Fuzz(func(t *testing.T, doc []byte, action, resource, value string) {
		d, err := Parse(doc)
		if err != nil {
			var pe *postern.Error
			if !errors.As(err, &pe) || pe.Code != ErrorCode || pe.Kind != postern.KindInvalid {
				t.Fatalf("error %#v is not a MalformedPolicyDocument", err)
			}
			return
		}
		keys := []string{"aws:username", "aws:sourceip", "aws:currenttime", "aws:epochtime", "aws:tagkeys",
			"aws:multifactorauthpresent", "aws:sourcearn", "x:b", "x:n", "x:y", "ec2:osuser"}
		contexts := []map[string][]string{nil, {}, {}, {}}
		for _, k := range keys {
			contexts[1][k] = []string{value}
			contexts[2][k] = []string{value, action, resource}
			contexts[3][k] = []string{}
		}
		contexts[2]["AWS:UserName"] = []string{resource}
		docs := []NamedDocument{{Name: "fuzz", Doc: d}, {Name: "nil"}, {Name: "again", Doc: d}}
		for _, c := range contexts {
			dec := Evaluate(docs, Request{Action: action, Resource: resource, Context: c})
			if dec.Effect != ImplicitDeny && (dec.PolicyName != "fuzz" || dec.StatementIndex >= len(d.Statements)) {
				t.Fatalf("decision %v names no statement of the document", dec)
			}
			_ = dec.String()
		}
	})
}
