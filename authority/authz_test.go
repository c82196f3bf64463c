package authority_test

import (
	"testing"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/store/sqlite/sqlitetest"
)

// Tag keys are case-sensitive, condition key names are not: the values
// of env and Env both count under aws:RequestTag/env (and
// aws:ResourceTag/env), so that a Deny on one cannot be skipped by adding
// the other. Before, one value replaced the other in map order.
func TestConditionKeysDifferingInCaseKeepEveryValue(t *testing.T) {
	ctx := t.Context()
	st, sealer := sqlitetest.Open(t)
	auth := authority.New(authority.Config{Region: "us-east-1", Account: "123456789012"}, st, sealer, nil)
	u, err := auth.CreateUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	const doc = `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["ec2:CreateTags","ec2-instance-connect:SendSSHPublicKey"],"Resource":"*"},
		{"Effect":"Deny","Action":"ec2:CreateTags","Resource":"*","Condition":{"StringEquals":{"aws:RequestTag/env":"prod"}}},
		{"Effect":"Deny","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/env":"prod"}}}]}`
	if err := auth.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: "bob", Name: "p", Document: doc}); err != nil {
		t.Fatal(err)
	}
	p := &authority.Principal{User: *u, ARN: auth.UserARN("bob")}
	for _, acc := range []authority.Access{
		{Action: "ec2:CreateTags", Resource: "*", Context: map[string][]string{"aws:RequestTag/env": {"prod"}, "aws:RequestTag/Env": {"dev"}}},
		{Action: "ec2-instance-connect:SendSSHPublicKey", Resource: "*",
			Context: authority.ResourceTagContext([]postern.Tag{{Key: "Env", Value: "dev"}, {Key: "env", Value: "prod"}})},
	} {
		// Map order decided which value won: try it often enough.
		for range 40 {
			if _, err := auth.Authorize(ctx, p, acc, authority.Env{}); !postern.IsKind(err, postern.KindDenied) {
				t.Fatalf("%s with %v: err = %v, want the explicit Deny", acc.Action, acc.Context, err)
			}
		}
	}
}

// A stored policy that no longer parses grants nothing; one that may hold
// a Deny denies everything, since skipping it would grant what its Deny
// took away.
func TestUnparsableStoredPolicy(t *testing.T) {
	ctx := t.Context()
	st, sealer := sqlitetest.Open(t)
	auth := authority.New(authority.Config{Region: "us-east-1", Account: "123456789012"}, st, sealer, nil)
	for _, name := range []string{"carol", "dave"} {
		if _, err := auth.CreateUser(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := auth.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: name, Name: "allow",
			Document: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:*","Resource":"*"}]}`}); err != nil {
			t.Fatal(err)
		}
	}
	// Written past PutPolicy's check, as a document valid once would be.
	broken := map[string]string{
		"carol": `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"ec2:TerminateInstances","Resource":"*","Condition":{"NoSuchOperator":{"a":"b"}}}]}`,
		"dave":  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iam:*","Resource":"*","Condition":{"NoSuchOperator":{"a":"b"}}}]}`,
	}
	for name, doc := range broken {
		if err := st.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: name, Name: "broken", Document: doc}); err != nil {
			t.Fatal(err)
		}
	}
	auth.InvalidateIdentities()
	for _, tc := range []struct {
		user, action string
		allowed      bool
	}{
		{"carol", "ec2:DescribeInstances", false},
		{"carol", "ec2:TerminateInstances", false},
		{"dave", "ec2:DescribeInstances", true},
		{"dave", "iam:CreateUser", false},
	} {
		u, err := st.GetUser(ctx, tc.user)
		if err != nil {
			t.Fatal(err)
		}
		_, err = auth.Authorize(ctx, &authority.Principal{User: *u, ARN: auth.UserARN(tc.user)}, authority.Access{Action: tc.action, Resource: "*"}, authority.Env{})
		if allowed := err == nil; allowed != tc.allowed || (err != nil && !postern.IsKind(err, postern.KindDenied)) {
			t.Errorf("%s %s: err = %v, want allowed %v", tc.user, tc.action, err, tc.allowed)
		}
	}
}
