package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// TestRealClients drives one server with the AWS SDK for Go v2, boto3 and
// the stock aws CLI, and reads its metrics.
func TestRealClients(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	var labVPC string
	t.Run("GoSDK", func(t *testing.T) { labVPC = testGoSDK(t, s) })
	if labVPC == "" {
		t.Fatal("the Go SDK subtest did not create the VPC the other clients look for")
	}
	t.Run("boto3", func(t *testing.T) { testBoto3(t, s, labVPC) })
	t.Run("awsCLI", func(t *testing.T) { testAWSCLI(t, s, labVPC) })
	t.Run("metrics", func(t *testing.T) { testMetrics(t, s) })
	assertNoLeaks(t, s)
}

var (
	vpcIDPattern    = regexp.MustCompile(`^vpc-[0-9a-f]{17}$`)
	subnetIDPattern = regexp.MustCompile(`^subnet-[0-9a-f]{17}$`)
)

// formatTags prints EC2 tags as sorted k=v pairs.
func formatTags(tags []ec2types.Tag) string {
	parts := make([]string, 0, len(tags))
	for _, tg := range tags {
		parts = append(parts, aws.ToString(tg.Key)+"="+aws.ToString(tg.Value))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// vpcIDs returns the ids of vpcs, sorted.
func vpcIDs(vpcs []ec2types.Vpc) []string {
	ids := make([]string, 0, len(vpcs))
	for _, v := range vpcs {
		ids = append(ids, aws.ToString(v.VpcId))
	}
	sort.Strings(ids)
	return ids
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	sort.Strings(out)
	return out
}

// testGoSDK exercises the EC2 and IAM clients of the AWS SDK for Go v2
// with BaseEndpoint, and returns the id of a VPC it leaves behind (tagged
// Name=lab, 10.20.0.0/16) for the other clients to find.
func testGoSDK(t *testing.T, s *server) string {
	ctx := context.Background()
	ec := s.adminEC2()

	lab, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{
		CidrBlock: aws.String("10.20.0.0/16"),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeVpc,
			Tags:         []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("lab")}},
		}},
	})
	if err != nil {
		t.Fatalf("CreateVpc: %v", err)
	}
	labID := aws.ToString(lab.Vpc.VpcId)
	if !vpcIDPattern.MatchString(labID) || aws.ToString(lab.Vpc.CidrBlock) != "10.20.0.0/16" ||
		formatTags(lab.Vpc.Tags) != "Name=lab" || lab.Vpc.State != ec2types.VpcStateAvailable {
		t.Fatalf("CreateVpc returned id %q cidr %q tags %q state %q", labID, aws.ToString(lab.Vpc.CidrBlock), formatTags(lab.Vpc.Tags), lab.Vpc.State)
	}
	scratch, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.30.0.0/16")})
	if err != nil {
		t.Fatalf("CreateVpc (second): %v", err)
	}
	scratchID := aws.ToString(scratch.Vpc.VpcId)

	sub, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{
		VpcId:     aws.String(scratchID),
		CidrBlock: aws.String("10.30.1.0/24"),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeSubnet,
			Tags:         []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("scratch-a")}},
		}},
	})
	if err != nil {
		t.Fatalf("CreateSubnet: %v", err)
	}
	subID := aws.ToString(sub.Subnet.SubnetId)
	if !subnetIDPattern.MatchString(subID) || aws.ToString(sub.Subnet.VpcId) != scratchID ||
		aws.ToString(sub.Subnet.CidrBlock) != "10.30.1.0/24" || formatTags(sub.Subnet.Tags) != "Name=scratch-a" {
		t.Fatalf("CreateSubnet returned id %q vpc %q cidr %q tags %q", subID, aws.ToString(sub.Subnet.VpcId), aws.ToString(sub.Subnet.CidrBlock), formatTags(sub.Subnet.Tags))
	}

	describe := func(in *ec2.DescribeVpcsInput) []ec2types.Vpc {
		t.Helper()
		out, err := ec.DescribeVpcs(ctx, in)
		if err != nil {
			t.Fatalf("DescribeVpcs(%+v): %v", in, err)
		}
		return out.Vpcs
	}
	byID := describe(&ec2.DescribeVpcsInput{VpcIds: []string{labID}})
	if len(byID) != 1 || aws.ToString(byID[0].VpcId) != labID || aws.ToString(byID[0].CidrBlock) != "10.20.0.0/16" || formatTags(byID[0].Tags) != "Name=lab" {
		t.Fatalf("DescribeVpcs by id: %d VPCs %v", len(byID), vpcIDs(byID))
	}
	if got := vpcIDs(describe(&ec2.DescribeVpcsInput{})); !slices.Equal(got, sorted(labID, scratchID)) {
		t.Errorf("DescribeVpcs: %v, want %v", got, sorted(labID, scratchID))
	}
	tagFilter := []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{"lab"}}}
	if got := vpcIDs(describe(&ec2.DescribeVpcsInput{Filters: tagFilter})); !slices.Equal(got, []string{labID}) {
		t.Errorf("DescribeVpcs tag:Name=lab: %v, want [%s]", got, labID)
	}
	cidrFilter := []ec2types.Filter{{Name: aws.String("cidr"), Values: []string{"10.30.0.0/16"}}}
	if got := vpcIDs(describe(&ec2.DescribeVpcsInput{Filters: cidrFilter})); !slices.Equal(got, []string{scratchID}) {
		t.Errorf("DescribeVpcs cidr=10.30.0.0/16: %v, want [%s]", got, scratchID)
	}
	wildcard := []ec2types.Filter{{Name: aws.String("cidr"), Values: []string{"10.2*"}}}
	if got := vpcIDs(describe(&ec2.DescribeVpcsInput{Filters: wildcard})); !slices.Equal(got, []string{labID}) {
		t.Errorf("DescribeVpcs cidr=10.2*: %v, want [%s]", got, labID)
	}

	subnets, err := ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{scratchID}}},
	})
	if err != nil {
		t.Fatalf("DescribeSubnets: %v", err)
	}
	if len(subnets.Subnets) != 1 || aws.ToString(subnets.Subnets[0].SubnetId) != subID {
		t.Fatalf("DescribeSubnets vpc-id=%s: %d subnets", scratchID, len(subnets.Subnets))
	}
	subnets, err = ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{labID}}},
	})
	if err != nil || len(subnets.Subnets) != 0 {
		t.Fatalf("DescribeSubnets vpc-id=%s (no subnets): %v, err %v", labID, subnets, err)
	}

	inst, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatalf("DescribeInstances: %v", err)
	}
	if inst.Reservations == nil || len(inst.Reservations) != 0 {
		t.Errorf("DescribeInstances on a server with no agents: reservations %v, want an empty list", inst.Reservations)
	}
	_, err = ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-xyz"}})
	wantAPIError(t, err, "InvalidInstanceID.Malformed", http.StatusBadRequest)
	_, err = ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	wantAPIError(t, err, "InvalidInstanceID.NotFound", http.StatusBadRequest)

	// Tags: add two, delete one by key.
	if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{labID},
		Tags:      []ec2types.Tag{{Key: aws.String("env"), Value: aws.String("test")}, {Key: aws.String("owner"), Value: aws.String("e2e")}},
	}); err != nil {
		t.Fatalf("CreateTags: %v", err)
	}
	if got := formatTags(describe(&ec2.DescribeVpcsInput{VpcIds: []string{labID}})[0].Tags); got != "Name=lab,env=test,owner=e2e" {
		t.Errorf("tags after CreateTags: %q", got)
	}
	if _, err := ec.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{labID}, Tags: []ec2types.Tag{{Key: aws.String("env")}}}); err != nil {
		t.Fatalf("DeleteTags: %v", err)
	}
	if got := formatTags(describe(&ec2.DescribeVpcsInput{VpcIds: []string{labID}})[0].Tags); got != "Name=lab,owner=e2e" {
		t.Errorf("tags after DeleteTags env: %q", got)
	}

	// Delete the subnet, then its VPC.
	if _, err := ec.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(subID)}); err != nil {
		t.Fatalf("DeleteSubnet: %v", err)
	}
	_, err = ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{subID}})
	wantAPIError(t, err, "InvalidSubnetID.NotFound", http.StatusBadRequest)
	if _, err := ec.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(scratchID)}); err != nil {
		t.Fatalf("DeleteVpc: %v", err)
	}
	if got := vpcIDs(describe(&ec2.DescribeVpcsInput{})); !slices.Equal(got, []string{labID}) {
		t.Errorf("DescribeVpcs after DeleteVpc: %v, want [%s]", got, labID)
	}
	_, err = ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{scratchID}})
	wantAPIError(t, err, "InvalidVpcID.NotFound", http.StatusBadRequest)

	// IAM: a user with a key and a read-only policy, who can then call.
	ic := s.adminIAM()
	u, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("alice")})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if arn := aws.ToString(u.User.Arn); !regexp.MustCompile(`^arn:aws:iam::\d{12}:user/alice$`).MatchString(arn) {
		t.Errorf("CreateUser: ARN %q", arn)
	}
	key, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("alice")})
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	keyID, secret := aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)
	noteSecret(secret, "secret of alice's key (Go SDK)")
	if !regexp.MustCompile(`^AKIA[A-Z2-7]{16}$`).MatchString(keyID) || len(secret) != 40 || key.AccessKey.Status != "Active" {
		t.Fatalf("CreateAccessKey: id %q, secret of %d characters, status %q", keyID, len(secret), key.AccessKey.Status)
	}
	if _, err := ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName:       aws.String("alice"),
		PolicyName:     aws.String("ReadEC2"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}`),
	}); err != nil {
		t.Fatalf("PutUserPolicy: %v", err)
	}
	users, err := ic.ListUsers(ctx, &iam.ListUsersInput{})
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	var names []string
	for _, u := range users.Users {
		names = append(names, aws.ToString(u.UserName))
	}
	if sort.Strings(names); !slices.Equal(names, []string{"admin", "alice"}) {
		t.Errorf("ListUsers: %v, want [admin alice]", names)
	}
	if got, err := s.ec2(keyID, secret).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil || !slices.Equal(vpcIDs(got.Vpcs), []string{labID}) {
		t.Errorf("DescribeVpcs as alice: %v (err %v)", got, err)
	}
	return labID
}

// requirePython fails the test unless python3 can import boto3.
func requirePython(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is not installed (the tests use it to run boto3); %s (apt-get install python3 python3-boto3)", ciHint)
	}
	if out, err := exec.Command(py, "-c", "import boto3, botocore").CombinedOutput(); err != nil {
		t.Fatalf("python3 cannot import boto3: %v\n%s\n%s (apt-get install python3-boto3)", err, out, ciHint)
	}
	return py
}

// requireAWSCLI fails the test unless the aws CLI is installed.
func requireAWSCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("aws")
	if err != nil {
		t.Fatalf("the aws CLI is not installed; %s (apt-get install awscli)", ciHint)
	}
	return path
}

// testBoto3 runs a boto3 script configured only by `postern env`.
func testBoto3(t *testing.T, s *server, labVPC string) {
	py := requirePython(t)
	script, err := filepath.Abs(filepath.Join("testdata", "boto3_describe.py"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, script)
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv(t.TempDir(), s.Env)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
			noteError(string(stderr))
		}
		t.Fatalf("boto3 script: %v\n%s", err, stderr)
	}
	var got struct {
		Vpcs []struct {
			VpcID     string `json:"VpcId"`
			CidrBlock string
			Tags      map[string]string
		}
		Users []string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("boto3 script output: %v\n%s", err, out)
	}
	if len(got.Vpcs) != 1 || got.Vpcs[0].VpcID != labVPC || got.Vpcs[0].CidrBlock != "10.20.0.0/16" || got.Vpcs[0].Tags["Name"] != "lab" {
		t.Errorf("boto3 ec2.describe_vpcs(): %+v, want only %s (10.20.0.0/16, Name=lab)", got.Vpcs, labVPC)
	}
	if !slices.Contains(got.Users, "admin") {
		t.Errorf("boto3 iam.list_users(): %v, want admin among them", got.Users)
	}
}

// testAWSCLI runs `aws ec2 describe-vpcs` configured only by `postern env`.
func testAWSCLI(t *testing.T, s *server, labVPC string) {
	awsCLI := requireAWSCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, awsCLI, "ec2", "describe-vpcs")
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv(t.TempDir(), s.Env)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
			noteError(string(stderr))
		}
		t.Fatalf("aws ec2 describe-vpcs: %v\n%s", err, stderr)
	}
	checkDescribeVpcsJSON(t, out, labVPC, "10.20.0.0/16", "lab")

	// The trail answers CloudTrail's own client.
	cmd = exec.CommandContext(ctx, awsCLI, "cloudtrail", "lookup-events",
		"--lookup-attributes", "AttributeKey=EventName,AttributeValue=CreateVpc")
	cmd.Dir = t.TempDir()
	cmd.Env = cleanEnv(t.TempDir(), s.Env)
	out, err = cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
			noteError(string(stderr))
		}
		t.Fatalf("aws cloudtrail lookup-events: %v\n%s", err, stderr)
	}
	var trail struct {
		Events []struct {
			EventName       string
			Username        string
			CloudTrailEvent string
		}
	}
	if err := json.Unmarshal(out, &trail); err != nil {
		t.Fatalf("aws cloudtrail lookup-events printed no JSON: %v\n%s", err, out)
	}
	found := false
	for _, ev := range trail.Events {
		if ev.EventName != "CreateVpc" {
			t.Errorf("lookup-events by EventName CreateVpc returned a %s event", ev.EventName)
		}
		found = found || ev.Username == "admin" && strings.Contains(ev.CloudTrailEvent, labVPC)
	}
	if !found {
		t.Errorf("aws cloudtrail lookup-events shows no CreateVpc of %s by admin:\n%s", labVPC, out)
	}
}

// checkDescribeVpcsJSON asserts that the aws CLI's describe-vpcs output
// lists exactly one VPC with the given id (when not empty), CIDR and Name.
func checkDescribeVpcsJSON(t *testing.T, out []byte, id, cidr, name string) {
	t.Helper()
	var got struct {
		Vpcs []struct {
			VpcID     string `json:"VpcId"`
			CidrBlock string
			State     string
			OwnerID   string `json:"OwnerId"`
			Tags      []struct{ Key, Value string }
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("aws ec2 describe-vpcs printed no JSON: %v\n%s", err, out)
	}
	if len(got.Vpcs) != 1 {
		t.Fatalf("aws ec2 describe-vpcs: %d VPCs, want 1\n%s", len(got.Vpcs), out)
	}
	v := got.Vpcs[0]
	tagName := ""
	for _, tg := range v.Tags {
		if tg.Key == "Name" {
			tagName = tg.Value
		}
	}
	if (id != "" && v.VpcID != id) || !vpcIDPattern.MatchString(v.VpcID) || v.CidrBlock != cidr || tagName != name ||
		v.State != "available" || !regexp.MustCompile(`^\d{12}$`).MatchString(v.OwnerID) {
		t.Errorf("aws ec2 describe-vpcs: %+v, want %s %s Name=%s available", v, id, cidr, name)
	}
}

// testMetrics reads /metrics after the calls above.
func testMetrics(t *testing.T, s *server) {
	resp, err := s.httpClient.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	text := string(b)
	if !strings.Contains(text, "# TYPE postern_api_requests_total counter") {
		t.Errorf("/metrics has no postern_api_requests_total counter:\n%.2000s", text)
	}
	// Every series names the replica (the host name by default), so
	// that a dashboard over several replicas can sum them.
	host, _ := os.Hostname()
	series := regexp.MustCompile(`(?m)^postern_api_requests_total\{[^}]*\}`).FindString(text)
	if !strings.Contains(series, `replica="`+host+`"`) {
		t.Errorf("/metrics series %q carry no replica label %q", series, host)
	}
	ok := regexp.MustCompile(`(?m)^postern_api_requests_total\{[^}]*operation="DescribeVpcs"[^}]*status="200"[^}]*\} [1-9]`)
	if !ok.MatchString(text) {
		t.Errorf("/metrics counts no successful DescribeVpcs:\n%s", grepLines(text, "postern_api_requests_total"))
	}
	failed := regexp.MustCompile(`(?m)^postern_api_requests_total\{[^}]*code="InvalidVpcID.NotFound"[^}]*\} [1-9]`)
	if !failed.MatchString(text) {
		t.Errorf("/metrics counts no InvalidVpcID.NotFound answer:\n%s", grepLines(text, "postern_api_requests_total"))
	}
}

// grepLines returns the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
