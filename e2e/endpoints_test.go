package e2e

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

var eiceIDPattern = regexp.MustCompile(`^eice-[0-9a-f]{17}$`)

// rawEndpoint is an endpoint as the XML has it, Postern's extension
// elements included (the SDK drops those).
type rawEndpoint struct {
	ID                string `xml:"instanceConnectEndpointId"`
	State             string `xml:"state"`
	AllowedPorts      []int  `xml:"posternAllowedPortSet>item"`
	MaxConnections    int    `xml:"posternMaxConnections"`
	MaxTunnelDuration int    `xml:"posternMaxTunnelDuration"`
	LiveTunnels       *int   `xml:"posternLiveTunnels"`
}

func endpointIDs(es []ec2types.Ec2InstanceConnectEndpoint) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, aws.ToString(e.InstanceConnectEndpointId))
	}
	return out
}

// describeEndpoints returns every endpoint passing filters, following
// NextToken with pages of size (0: one call).
func describeEndpoints(t *testing.T, ec *ec2.Client, size int32, ids []string, filters ...ec2types.Filter) []ec2types.Ec2InstanceConnectEndpoint {
	t.Helper()
	in := &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: ids, Filters: filters}
	if size > 0 {
		in.MaxResults = aws.Int32(size)
	}
	var out []ec2types.Ec2InstanceConnectEndpoint
	p := ec2.NewDescribeInstanceConnectEndpointsPaginator(ec, in)
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("DescribeInstanceConnectEndpoints %v %v: %v", ids, filters, err)
		}
		if size > 0 && len(page.InstanceConnectEndpoints) > int(size) {
			t.Errorf("a page of MaxResults %d holds %d endpoints", size, len(page.InstanceConnectEndpoints))
		}
		out = append(out, page.InstanceConnectEndpoints...)
	}
	return out
}

func filter(name string, values ...string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String(name), Values: values}
}

// rawDescribe describes endpoints with a raw call and decodes the XML.
func (s *server) rawDescribe(t *testing.T, kv ...string) []rawEndpoint {
	t.Helper()
	r := s.do(t, request{Form: ec2Form("DescribeInstanceConnectEndpoints", kv...), Creds: s.admin()})
	r.want200(t)
	var out struct {
		Endpoints []rawEndpoint `xml:"instanceConnectEndpointSet>item"`
	}
	if err := xml.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("DescribeInstanceConnectEndpoints XML: %v\n%s", err, r.Body)
	}
	return out.Endpoints
}

func TestInstanceConnectEndpoints(t *testing.T) {
	s := startServer(t)
	ec := s.adminEC2()
	ctx := context.Background()

	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.40.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := aws.ToString(vpc.Vpc.VpcId)
	var subnets []string
	for _, cidr := range []string{"10.40.1.0/24", "10.40.2.0/24", "10.40.3.0/24"} {
		sn, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpcID), CidrBlock: aws.String(cidr)})
		if err != nil {
			t.Fatal(err)
		}
		subnets = append(subnets, aws.ToString(sn.Subnet.SubnetId))
	}

	// Create, with everything the SDK can send.
	in := &ec2.CreateInstanceConnectEndpointInput{
		SubnetId:         aws.String(subnets[0]),
		SecurityGroupIds: []string{"sg-0123456789abcdef0"},
		ClientToken:      aws.String("create-edge-1"),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeInstanceConnectEndpoint,
			Tags:         []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("edge")}},
		}},
	}
	created, err := ec.CreateInstanceConnectEndpoint(ctx, in)
	if err != nil {
		t.Fatalf("CreateInstanceConnectEndpoint: %v", err)
	}
	e := created.InstanceConnectEndpoint
	id := aws.ToString(e.InstanceConnectEndpointId)
	if !eiceIDPattern.MatchString(id) {
		t.Fatalf("endpoint id %q is not eice- and 17 hex digits", id)
	}
	if arn := aws.ToString(e.InstanceConnectEndpointArn); arn != "arn:aws:ec2:"+region+":"+aws.ToString(e.OwnerId)+":instance-connect-endpoint/"+id {
		t.Errorf("ARN %q", arn)
	}
	if e.State != ec2types.Ec2InstanceConnectEndpointStateCreateInProgress || aws.ToString(e.SubnetId) != subnets[0] ||
		aws.ToString(e.VpcId) != vpcID || aws.ToString(e.AvailabilityZone) != region+"a" || e.CreatedAt == nil ||
		aws.ToBool(e.PreserveClientIp) || !slices.Equal(e.SecurityGroupIds, []string{"sg-0123456789abcdef0"}) ||
		len(e.NetworkInterfaceIds) != 0 || formatTags(e.Tags) != "Name=edge" || aws.ToString(created.ClientToken) != "create-edge-1" {
		t.Errorf("created endpoint = %+v", e)
	}

	// The same token and parameters: the same endpoint, not a second.
	again, err := ec.CreateInstanceConnectEndpoint(ctx, in)
	if err != nil {
		t.Fatalf("CreateInstanceConnectEndpoint retried: %v", err)
	}
	if got := aws.ToString(again.InstanceConnectEndpoint.InstanceConnectEndpointId); got != id {
		t.Errorf("a retry with the same ClientToken created %s, want %s", got, id)
	}

	// A raw create shows the join credential once; the trail never has it.
	r := s.do(t, request{Form: ec2Form("CreateInstanceConnectEndpoint", "SubnetId", subnets[1],
		"AllowedPort.1", "22", "AllowedPort.2", "5432", "MaxConnections", "7", "MaxTunnelDuration", "900"), Creds: s.admin()})
	r.want200(t)
	var raw struct {
		Endpoint   rawEndpoint `xml:"instanceConnectEndpoint"`
		Credential string      `xml:"posternJoinCredential"`
	}
	if err := xml.Unmarshal(r.Body, &raw); err != nil {
		t.Fatal(err)
	}
	id2 := raw.Endpoint.ID
	if !strings.HasPrefix(raw.Credential, id2+".") || len(raw.Credential) < len(id2)+30 {
		t.Fatalf("posternJoinCredential %q does not look like a credential of %s", raw.Credential, id2)
	}
	noteSecret(raw.Credential, "join credential of "+id2)
	if !slices.Equal(raw.Endpoint.AllowedPorts, []int{22, 5432}) || raw.Endpoint.MaxConnections != 7 || raw.Endpoint.MaxTunnelDuration != 900 {
		t.Errorf("settings given on create came back as %+v", raw.Endpoint)
	}
	rec := s.wantAudited(t, "CreateInstanceConnectEndpoint", r.RequestID, "", s.AdminKeyID)
	if b, _ := json.Marshal(rec); strings.Contains(string(b), raw.Credential) {
		t.Errorf("the audit record of the create holds the join credential")
	}
	{
		// A retry never shows the credential again.
		r2 := s.do(t, request{Form: ec2Form("CreateInstanceConnectEndpoint", "SubnetId", subnets[0], "ClientToken", "create-edge-1",
			"SecurityGroupId.1", "sg-0123456789abcdef0", "TagSpecification.1.ResourceType", "instance-connect-endpoint",
			"TagSpecification.1.Tag.1.Key", "Name", "TagSpecification.1.Tag.1.Value", "edge"), Creds: s.admin()})
		r2.want200(t)
		if strings.Contains(string(r2.Body), "posternJoinCredential") || !strings.Contains(string(r2.Body), id) {
			t.Errorf("a retried create answered:\n%s", r2.Body)
		}
	}

	third, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{
		SubnetId: aws.String(subnets[2]),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstanceConnectEndpoint,
			Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("ops")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id3 := aws.ToString(third.InstanceConnectEndpoint.InstanceConnectEndpointId)
	all := sorted(id, id2, id3)

	// Describe: everything, by id, by each filter, and in pages.
	if got := endpointIDs(describeEndpoints(t, ec, 0, nil)); !slices.Equal(got, all) {
		t.Errorf("describe all = %v, want %v", got, all)
	}
	if got := endpointIDs(describeEndpoints(t, ec, 0, []string{id3, id})); !slices.Equal(got, sorted(id, id3)) {
		t.Errorf("describe by ids = %v", got)
	}
	for _, c := range []struct {
		f    ec2types.Filter
		want []string
	}{
		{filter("instance-connect-endpoint-id", id2), []string{id2}},
		{filter("state", "create-in-progress"), all},
		{filter("state", "create-complete"), []string{}},
		{filter("subnet-id", subnets[2], subnets[1]), sorted(id2, id3)},
		{filter("vpc-id", vpcID), all},
		{filter("vpc-id", "vpc-0000000000000000f"), []string{}},
		{filter("tag:Name", "ed*"), []string{id}},
		{filter("tag-key", "team"), []string{id3}},
	} {
		if got := endpointIDs(describeEndpoints(t, ec, 0, nil, c.f)); !slices.Equal(got, c.want) {
			t.Errorf("describe with filter %s=%v = %v, want %v", aws.ToString(c.f.Name), c.f.Values, got, c.want)
		}
	}
	for _, size := range []int32{1, 2, 50} {
		if got := endpointIDs(describeEndpoints(t, ec, size, nil)); !slices.Equal(got, all) {
			t.Errorf("describe in pages of %d = %v, want %v", size, got, all)
		}
	}

	// Modify: Postern's settings (extension parameters), then look.
	r = s.do(t, request{Form: ec2Form("ModifyInstanceConnectEndpoint", "InstanceConnectEndpointId", id,
		"AllowedPort.1", "443", "AllowedPort.2", "22", "MaxConnections", "5", "MaxTunnelDuration", "600"), Creds: s.admin()})
	r.want200(t)
	s.wantAudited(t, "ModifyInstanceConnectEndpoint", r.RequestID, "", s.AdminKeyID)
	byID := map[string]rawEndpoint{}
	for _, x := range s.rawDescribe(t, "InstanceConnectEndpointId.1", id, "InstanceConnectEndpointId.2", id3) {
		byID[x.ID] = x
	}
	if x := byID[id]; !slices.Equal(x.AllowedPorts, []int{22, 443}) || x.MaxConnections != 5 || x.MaxTunnelDuration != 600 {
		t.Errorf("after modify, %s = %+v", id, x)
	}
	if x := byID[id3]; !slices.Equal(x.AllowedPorts, []int{22, 3389}) || x.MaxConnections != 20 || x.MaxTunnelDuration != 3600 {
		t.Errorf("defaults of %s = %+v, want ports 22 and 3389, 20 connections, 3600 s", id3, x)
	}
	// The SDK's own Modify with what Postern supports.
	if _, err := ec.ModifyInstanceConnectEndpoint(ctx, &ec2.ModifyInstanceConnectEndpointInput{
		InstanceConnectEndpointId: aws.String(id), PreserveClientIp: aws.Bool(false),
	}); err != nil {
		t.Errorf("ModifyInstanceConnectEndpoint PreserveClientIp=false: %v", err)
	}

	// Tags on endpoints.
	if _, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id2},
		Tags: []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("db")}}}); err != nil {
		t.Fatalf("CreateTags on an endpoint: %v", err)
	}
	if got := endpointIDs(describeEndpoints(t, ec, 0, nil, filter("tag-key", "team"))); !slices.Equal(got, sorted(id2, id3)) {
		t.Errorf("after CreateTags, tag-key=team = %v", got)
	}
	if _, err := ec.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id2}}); err != nil {
		t.Fatalf("DeleteTags on an endpoint: %v", err)
	}

	// Bad input: the right code, audited, and nothing changed.
	before := describeEndpoints(t, ec, 0, nil)
	rawBefore := s.rawDescribe(t)
	for _, c := range []struct {
		name, event, code string
		call              func() error
	}{
		{"unknown subnet", "CreateInstanceConnectEndpoint", "InvalidSubnetID.NotFound", func() error {
			_, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{SubnetId: aws.String("subnet-0000000000000000f")})
			return err
		}},
		{"malformed subnet", "CreateInstanceConnectEndpoint", "InvalidSubnetID.Malformed", func() error {
			_, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{SubnetId: aws.String("subnet-nope")})
			return err
		}},
		{"PreserveClientIp", "CreateInstanceConnectEndpoint", "InvalidParameterValue", func() error {
			_, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{SubnetId: aws.String(subnets[0]), PreserveClientIp: aws.Bool(true)})
			return err
		}},
		{"second endpoint in a subnet", "CreateInstanceConnectEndpoint", "ResourceLimitExceeded", func() error {
			_, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{SubnetId: aws.String(subnets[0])})
			return err
		}},
		{"token mismatch", "CreateInstanceConnectEndpoint", "IdempotentParameterMismatch", func() error {
			_, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{SubnetId: aws.String(subnets[0]), ClientToken: aws.String("create-edge-1")})
			return err
		}},
		{"malformed id", "DescribeInstanceConnectEndpoints", "InvalidInstanceConnectEndpointId.Malformed", func() error {
			_, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: []string{"eice-123"}})
			return err
		}},
		{"unknown id", "DescribeInstanceConnectEndpoints", "InvalidInstanceConnectEndpointId.NotFound", func() error {
			_, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: []string{"eice-0000000000000000f"}})
			return err
		}},
		{"unknown filter", "DescribeInstanceConnectEndpoints", "InvalidParameterValue", func() error {
			_, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{Filters: []ec2types.Filter{filter("color", "red")}})
			return err
		}},
		{"bad NextToken", "DescribeInstanceConnectEndpoints", "InvalidPaginationToken", func() error {
			_, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{NextToken: aws.String("bm90IGEgdG9rZW4")})
			return err
		}},
		{"MaxResults too large", "DescribeInstanceConnectEndpoints", "InvalidParameterValue", func() error {
			_, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{MaxResults: aws.Int32(51)})
			return err
		}},
		{"modify unknown id", "ModifyInstanceConnectEndpoint", "InvalidInstanceConnectEndpointId.NotFound", func() error {
			_, err := ec.ModifyInstanceConnectEndpoint(ctx, &ec2.ModifyInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String("eice-0000000000000000f")})
			return err
		}},
		{"modify PreserveClientIp", "ModifyInstanceConnectEndpoint", "InvalidParameterValue", func() error {
			_, err := ec.ModifyInstanceConnectEndpoint(ctx, &ec2.ModifyInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String(id), PreserveClientIp: aws.Bool(true)})
			return err
		}},
		{"delete malformed id", "DeleteInstanceConnectEndpoint", "InvalidInstanceConnectEndpointId.Malformed", func() error {
			_, err := ec.DeleteInstanceConnectEndpoint(ctx, &ec2.DeleteInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String("i-0123456789abcdef0")})
			return err
		}},
		{"delete unknown id", "DeleteInstanceConnectEndpoint", "InvalidInstanceConnectEndpointId.NotFound", func() error {
			_, err := ec.DeleteInstanceConnectEndpoint(ctx, &ec2.DeleteInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String("eice-0000000000000000f")})
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			msg := wantAPIError(t, err, c.code, 400)
			if c.name == "PreserveClientIp" && !strings.Contains(msg, "source address") {
				t.Errorf("PreserveClientIp refusal does not say why: %q", msg)
			}
			s.wantAudited(t, c.event, requestIDOf(t, err), c.code, s.AdminKeyID)
		})
	}
	r = s.do(t, request{Form: ec2Form("ModifyInstanceConnectEndpoint", "InstanceConnectEndpointId", id, "AllowedPort.1", "0"), Creds: s.admin()})
	r.want(t, 400, "InvalidParameterValue")
	r = s.do(t, request{Form: ec2Form("ModifyInstanceConnectEndpoint", "InstanceConnectEndpointId", id, "MaxTunnelDuration", "3601"), Creds: s.admin()})
	r.want(t, 400, "InvalidParameterValue")
	if after := describeEndpoints(t, ec, 0, nil); !slices.Equal(endpointIDs(after), endpointIDs(before)) {
		t.Errorf("bad input changed the endpoints: %v, was %v", endpointIDs(after), endpointIDs(before))
	}
	if rawAfter := s.rawDescribe(t); !slices.EqualFunc(rawAfter, rawBefore, func(a, b rawEndpoint) bool {
		return a.ID == b.ID && a.State == b.State && slices.Equal(a.AllowedPorts, b.AllowedPorts) &&
			a.MaxConnections == b.MaxConnections && a.MaxTunnelDuration == b.MaxTunnelDuration
	}) {
		t.Errorf("bad input changed the endpoints: %+v, was %+v", rawAfter, rawBefore)
	}

	// boto3 parses the answer, paged and whole.
	t.Run("boto3", func(t *testing.T) { testBoto3Endpoints(t, s, all) })

	// Delete: an endpoint that never joined is deleted at once, and its
	// subnet takes a new one.
	del, err := ec.DeleteInstanceConnectEndpoint(ctx, &ec2.DeleteInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String(id)})
	if err != nil {
		t.Fatalf("DeleteInstanceConnectEndpoint: %v", err)
	}
	if aws.ToString(del.InstanceConnectEndpoint.InstanceConnectEndpointId) != id || del.InstanceConnectEndpoint.State != ec2types.Ec2InstanceConnectEndpointStateDeleteComplete {
		t.Errorf("DeleteInstanceConnectEndpoint answered %+v", del.InstanceConnectEndpoint)
	}
	_, err = ec.DeleteInstanceConnectEndpoint(ctx, &ec2.DeleteInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String(id)})
	s.wantAudited(t, "DeleteInstanceConnectEndpoint", requestIDOf(t, err), wantAPIErrorCode(t, err, "IncorrectState"), s.AdminKeyID)
	if got := endpointIDs(describeEndpoints(t, ec, 0, nil, filter("state", "delete-complete"))); !slices.Equal(got, []string{id}) {
		t.Errorf("state=delete-complete = %v", got)
	}
	if _, err := ec.CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{SubnetId: aws.String(subnets[0])}); err != nil {
		t.Errorf("a new endpoint in the subnet of a deleted one: %v", err)
	}

	assertNoLeaks(t, s)
}

// wantAPIErrorCode asserts err is code (HTTP 400) and returns the code.
func wantAPIErrorCode(t *testing.T, err error, code string) string {
	t.Helper()
	wantAPIError(t, err, code, 400)
	return code
}

// testBoto3Endpoints runs boto3's describe_instance_connect_endpoints.
func testBoto3Endpoints(t *testing.T, s *server, want []string) {
	py := requirePython(t)
	script, err := filepath.Abs(filepath.Join("testdata", "boto3_endpoints.py"))
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
		Paged []struct {
			ID               string `json:"Id"`
			Arn, State       string
			SubnetID         string `json:"SubnetId"`
			PreserveClientIP bool   `json:"PreserveClientIp"`
			CreatedAt        string
			Tags             map[string]string
		}
		Whole int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("boto3 script output: %v\n%s", err, out)
	}
	var ids []string
	for _, e := range got.Paged {
		ids = append(ids, e.ID)
		if !strings.HasSuffix(e.Arn, ":instance-connect-endpoint/"+e.ID) || e.State != "create-in-progress" || e.CreatedAt == "" || e.PreserveClientIP {
			t.Errorf("boto3 read endpoint %+v", e)
		}
	}
	if !slices.Equal(ids, want) || got.Whole != len(want) {
		t.Errorf("boto3 describe_instance_connect_endpoints: paged %v, whole %d; want %v", ids, got.Whole, want)
	}
}
