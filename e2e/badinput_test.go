package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// badCase is one request the server must refuse.
type badCase struct {
	name string
	req  func() request
	// status and code are what the answer must carry; message, when not
	// empty, must occur in its message (case-insensitively).
	status  int
	code    string
	message string
	// event is the audit event name to look the attempt up by; empty
	// looks among all failed calls.
	event string
	// auditKey is the access key id the audit record must name (empty:
	// not checked).
	auditKey string
}

// unknownKeyID is well formed and belongs to no one.
const unknownKeyID = "AKIAZZZZZZZZZZZZZZZZ"

// badCases returns the "Bad input" cases of the issue, in its order, for
// server s on which user bob has an access key and busyVPC has a subnet.
func badCases(s *server, busyVPC string) []badCase {
	admin := s.AdminKeyID
	return []badCase{
		{
			name: "unknown access key",
			req: func() request {
				return request{Form: ec2Form("DescribeVpcs"), Creds: &aws.Credentials{AccessKeyID: unknownKeyID, SecretAccessKey: strings.Repeat("x", 40)}}
			},
			status: http.StatusForbidden, code: "UnrecognizedClientException",
			event: "DescribeVpcs", auditKey: unknownKeyID,
		},
		{
			name: "wrong secret",
			req: func() request {
				return request{Form: ec2Form("DescribeVpcs"), Creds: &aws.Credentials{AccessKeyID: s.AdminKeyID, SecretAccessKey: strings.Repeat("x", 40)}}
			},
			status: http.StatusForbidden, code: "InvalidSignatureException", message: "does not match",
			event: "DescribeVpcs", auditKey: admin,
		},
		{
			name: "signature dated ten minutes ago",
			req: func() request {
				return request{Form: ec2Form("DescribeVpcs"), Creds: s.admin(), SignedAt: time.Now().Add(-10 * time.Minute)}
			},
			status: http.StatusForbidden, code: "InvalidSignatureException", message: "expired",
			event: "DescribeVpcs", auditKey: admin,
		},
		{
			name: "signature dated ten minutes ahead",
			req: func() request {
				return request{Form: ec2Form("DescribeVpcs"), Creds: s.admin(), SignedAt: time.Now().Add(10 * time.Minute)}
			},
			status: http.StatusForbidden, code: "InvalidSignatureException", message: "not yet current",
			event: "DescribeVpcs", auditKey: admin,
		},
		{
			name: "expired presigned URL",
			req: func() request {
				return request{Form: ec2Form("DescribeVpcs"), Creds: s.admin(), PresignExpires: time.Second, SignedAt: time.Now().Add(-30 * time.Second)}
			},
			status: http.StatusForbidden, code: "InvalidSignatureException", message: "expired",
			event: "DescribeVpcs", auditKey: admin,
		},
		{
			name:   "no signature",
			req:    func() request { return request{Form: ec2Form("DescribeVpcs")} },
			status: http.StatusForbidden, code: "MissingAuthenticationTokenException",
			event: "DescribeVpcs",
		},
		{
			name: "malformed JSON",
			req: func() request {
				return request{Target: cloudTrailTarget + ".LookupEvents", Body: []byte(`{"LookupAttributes": [`), Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "SerializationException",
			event: "LookupEvents", auditKey: admin,
		},
		{
			name: "JSON that is not an object",
			req: func() request {
				return request{Target: cloudTrailTarget + ".LookupEvents", Body: []byte(`["LookupAttributes"]`), Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "SerializationException",
			event: "LookupEvents", auditKey: admin,
		},
		{
			name: "unknown X-Amz-Target operation",
			req: func() request {
				return request{Target: cloudTrailTarget + ".DeleteTrail", Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "UnknownOperationException",
		},
		{
			name: "unknown X-Amz-Target service",
			req: func() request {
				return request{Target: "NoSuchService_20200101.DoIt", Service: "cloudtrail", Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "UnknownOperationException",
		},
		{
			name: "unknown Action",
			req: func() request {
				return request{Form: ec2Form("RunInstances", "ImageId", "ami-12345678"), Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "InvalidAction",
		},
		{
			name: "body over 1 MiB",
			req: func() request {
				return request{Form: ec2Form("DescribeVpcs", "Filter.1.Name", "tag:pad", "Filter.1.Value.1", strings.Repeat("a", 1<<20)), Creds: s.admin()}
			},
			status: http.StatusRequestEntityTooLarge, code: "RequestEntityTooLarge",
		},
		{
			name:   "malformed VPC id",
			req:    func() request { return request{Form: ec2Form("DescribeVpcs", "VpcId.1", "vpc-XYZ"), Creds: s.admin()} },
			status: http.StatusBadRequest, code: "InvalidVpcID.Malformed",
			event: "DescribeVpcs", auditKey: admin,
		},
		{
			name: "malformed subnet id",
			req: func() request {
				return request{Form: ec2Form("DeleteSubnet", "SubnetId", "subnet-../../x"), Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "InvalidSubnetID.Malformed",
			event: "DeleteSubnet", auditKey: admin,
		},
		{
			name:   "user name with a space",
			req:    func() request { return request{Form: iamForm("CreateUser", "UserName", "bad name"), Creds: s.admin()} },
			status: http.StatusBadRequest, code: "ValidationError",
			event: "CreateUser", auditKey: admin,
		},
		{
			name: "malformed policy document",
			req: func() request {
				return request{Form: iamForm("PutUserPolicy", "UserName", "bob", "PolicyName", "typo",
					"PolicyDocument", `{"Version":"2012-10-17","Statement":[{"Effect":"Alow","Action":"*","Resource":"*"}]}`), Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "MalformedPolicyDocument", message: "Statement[0].Effect",
			event: "PutUserPolicy", auditKey: admin,
		},
		{
			name: "policy document that is not JSON",
			req: func() request {
				return request{Form: iamForm("PutUserPolicy", "UserName", "bob", "PolicyName", "typo", "PolicyDocument", `{"Version":`), Creds: s.admin()}
			},
			status: http.StatusBadRequest, code: "MalformedPolicyDocument",
			event: "PutUserPolicy", auditKey: admin,
		},
		{
			name:   "duplicate user",
			req:    func() request { return request{Form: iamForm("CreateUser", "UserName", "bob"), Creds: s.admin()} },
			status: http.StatusConflict, code: "EntityAlreadyExists",
			event: "CreateUser", auditKey: admin,
		},
		{
			name:   "deleting a user who has an access key",
			req:    func() request { return request{Form: iamForm("DeleteUser", "UserName", "bob"), Creds: s.admin()} },
			status: http.StatusConflict, code: "DeleteConflict",
			event: "DeleteUser", auditKey: admin,
		},
		{
			name:   "deleting a VPC that has a subnet",
			req:    func() request { return request{Form: ec2Form("DeleteVpc", "VpcId", busyVPC), Creds: s.admin()} },
			status: http.StatusBadRequest, code: "DependencyViolation", // EC2 answers client errors with 400
			event: "DeleteVpc", auditKey: admin,
		},
	}
}

// TestBadInput sends every kind of bad request the issue lists and checks
// that each gets its AWS error code and status, changes nothing, is
// audited, and leaves the server serving.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := context.Background()

	// Something to collide with and something in use.
	ic := s.adminIAM()
	if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("bob")}); err != nil {
		t.Fatalf("CreateUser bob: %v", err)
	}
	key, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("bob")})
	if err != nil {
		t.Fatalf("CreateAccessKey bob: %v", err)
	}
	noteSecret(aws.ToString(key.AccessKey.SecretAccessKey), "secret of bob's key")
	ec := s.adminEC2()
	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	if err != nil {
		t.Fatalf("CreateVpc: %v", err)
	}
	busyVPC := aws.ToString(vpc.Vpc.VpcId)
	if _, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.1.2.0/24"),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSubnet, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("busy")}}}},
	}); err != nil {
		t.Fatalf("CreateSubnet: %v", err)
	}

	// The well-formed twins of the signing cases work, so the refusals
	// below are about what is wrong with them and nothing else.
	t.Run("controls", func(t *testing.T) {
		s.do(t, request{Form: ec2Form("DescribeVpcs"), Creds: s.admin()}).want200(t)
		s.do(t, request{Form: ec2Form("DescribeVpcs"), Creds: s.admin(), SignedAt: time.Now().Add(-4 * time.Minute)}).want200(t)
		s.do(t, request{Form: ec2Form("DescribeVpcs"), Creds: s.admin(), PresignExpires: time.Minute}).want200(t)
		s.do(t, request{Target: cloudTrailTarget + ".LookupEvents", Body: []byte(`{"MaxResults": 1}`), Creds: s.admin()}).want200(t)
		s.do(t, request{Form: ec2Form("DescribeVpcs", "Filter.1.Name", "tag:pad", "Filter.1.Value.1", strings.Repeat("a", 1<<19)), Creds: s.admin()}).want200(t)
	})

	before := s.snapshot(t)
	for _, bc := range badCases(s, busyVPC) {
		t.Run(bc.name, func(t *testing.T) {
			r := s.do(t, bc.req())
			r.want(t, bc.status, bc.code)
			if bc.message != "" && !strings.Contains(strings.ToLower(r.Message), strings.ToLower(bc.message)) {
				t.Errorf("message %q does not say %q", r.Message, bc.message)
			}
			if r.Message == "" {
				t.Errorf("the error has no message")
			}
			if after := s.snapshot(t); after != before {
				t.Errorf("the refused call changed the server:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			s.wantAudited(t, bc.event, r.RequestID, bc.code, bc.auditKey)
			s.assertServing(t)
		})
	}
	assertNoLeaks(t, s)
}
