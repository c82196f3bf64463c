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
