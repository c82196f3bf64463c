package e2e

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// untilNotThrottled repeats call while the server answers
// ThrottlingException: the admin's own bucket is small on a throttled
// server, and its tokens come back only with time, which no event
// announces.
func untilNotThrottled(t *testing.T, what string, call func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := call()
		if err == nil {
			return
		}
		code, _, _ := apiError(t, err)
		if code != "ThrottlingException" {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still throttled after 30s", what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestThrottling runs a server whose per-key bucket holds two requests and
// refills at one a second: a key's third immediate call is throttled and
// audited, while another key is unaffected.
func TestThrottling(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--throttle-rate", "1", "--throttle-burst", "2")
	ctx := context.Background()

	// Two users who may do anything, made at the admin's slow pace.
	ic := s.adminIAM()
	keys := map[string]*aws.Credentials{}
	for _, name := range []string{"busy", "calm"} {
		untilNotThrottled(t, "CreateUser "+name, func() error {
			_, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
			return err
		})
		untilNotThrottled(t, "PutUserPolicy "+name, func() error {
			_, err := ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String("All"),
				PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)})
			return err
		})
		untilNotThrottled(t, "CreateAccessKey "+name, func() error {
			out, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
			if err == nil {
				keys[name] = &aws.Credentials{AccessKeyID: aws.ToString(out.AccessKey.AccessKeyId), SecretAccessKey: aws.ToString(out.AccessKey.SecretAccessKey)}
				noteSecret(keys[name].SecretAccessKey, "secret of "+name+"'s key")
			}
			return err
		})
	}

	// Sign first, send back to back: the three calls are as immediate as
	// the connection allows.
	var reqs []*http.Request
	for range 3 {
		reqs = append(reqs, s.build(t, request{Form: ec2Form("DescribeVpcs"), Creds: keys["busy"]}))
	}
	var answers []response
	for _, hr := range reqs {
		answers = append(answers, s.send(t, hr))
	}
	answers[0].want200(t)
	answers[1].want200(t)
	answers[2].want(t, http.StatusBadRequest, "ThrottlingException")

	// Another key has its own bucket.
	s.do(t, request{Form: ec2Form("DescribeVpcs"), Creds: keys["calm"]}).want200(t)
	s.do(t, request{Form: ec2Form("DescribeVpcs"), Creds: keys["calm"]}).want200(t)

	// The throttled call is in the trail, with the key that was refused
	// (lookupEvents waits for the admin's bucket).
	rec := s.wantAudited(t, "DescribeVpcs", answers[2].RequestID, "ThrottlingException", keys["busy"].AccessKeyID)
	if u, _ := rec["userIdentity"].(map[string]any)["userName"].(string); u != "busy" {
		t.Errorf("the throttled call is audited for user %q, want busy", u)
	}

	resp, err := s.httpClient.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^postern_api_throttled_total\{replica="[^"]+"\} [1-9]`).Match(b) {
		t.Errorf("/metrics: postern_api_throttled_total is not positive:\n%s", grepLines(string(b), "throttled"))
	}
}
