package opentunnel

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// fakeEC2 answers from a fixed inventory, applying the filters the way
// the server does.
type fakeEC2 struct {
	instances []ec2types.Instance
	endpoints []ec2types.Ec2InstanceConnectEndpoint
	pageSize  int
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	out := &ec2.DescribeInstancesOutput{}
	for _, i := range f.instances {
		for _, id := range in.InstanceIds {
			if aws.ToString(i.InstanceId) == id {
				out.Reservations = append(out.Reservations, ec2types.Reservation{Instances: []ec2types.Instance{i}})
			}
		}
	}
	return out, nil
}

func (f *fakeEC2) DescribeInstanceConnectEndpoints(_ context.Context, in *ec2.DescribeInstanceConnectEndpointsInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstanceConnectEndpointsOutput, error) {
	var match []ec2types.Ec2InstanceConnectEndpoint
	for _, e := range f.endpoints {
		if len(in.InstanceConnectEndpointIds) > 0 && !contains(in.InstanceConnectEndpointIds, aws.ToString(e.InstanceConnectEndpointId)) {
			continue
		}
		ok := true
		for _, flt := range in.Filters {
			switch aws.ToString(flt.Name) {
			case "state":
				ok = ok && contains(flt.Values, string(e.State))
			case "vpc-id":
				ok = ok && contains(flt.Values, aws.ToString(e.VpcId))
			}
		}
		if ok {
			match = append(match, e)
		}
	}
	// Pages of pageSize, the token being the next index.
	start := 0
	if in.NextToken != nil {
		start = len(aws.ToString(in.NextToken))
	}
	end := len(match)
	out := &ec2.DescribeInstanceConnectEndpointsOutput{}
	if f.pageSize > 0 && start+f.pageSize < end {
		end = start + f.pageSize
		out.NextToken = aws.String(strings.Repeat("x", end))
	}
	out.InstanceConnectEndpoints = match[start:end]
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func endpoint(id, vpc, subnet, state, dns string) ec2types.Ec2InstanceConnectEndpoint {
	return ec2types.Ec2InstanceConnectEndpoint{InstanceConnectEndpointId: aws.String(id), VpcId: aws.String(vpc),
		SubnetId: aws.String(subnet), State: ec2types.Ec2InstanceConnectEndpointState(state), DnsName: aws.String(dns)}
}

func TestFindEndpoint(t *testing.T) {
	ctx := context.Background()
	api := &fakeEC2{
		pageSize: 1,
		instances: []ec2types.Instance{{InstanceId: aws.String("i-0a"), PrivateIpAddress: aws.String("10.0.2.7"),
			VpcId: aws.String("vpc-1"), SubnetId: aws.String("subnet-2")}},
		endpoints: []ec2types.Ec2InstanceConnectEndpoint{
			endpoint("eice-other", "vpc-9", "subnet-2", "create-complete", "other.example.test"),
			endpoint("eice-pending", "vpc-1", "subnet-2", "create-in-progress", ""),
			endpoint("eice-vpc", "vpc-1", "subnet-1", "create-complete", "vpc.example.test"),
			endpoint("eice-deleted", "vpc-1", "subnet-2", "delete-complete", "deleted.example.test"),
			endpoint("eice-subnet", "vpc-1", "subnet-2", "create-complete", "subnet.example.test:8443"),
			endpoint("eice-empty", "vpc-3", "subnet-3", "create-complete", ""),
		},
	}
	inst, err := DescribeInstance(ctx, api, "i-0a")
	if err != nil {
		t.Fatal(err)
	}
	if inst != (Instance{ID: "i-0a", PrivateIP: "10.0.2.7", VpcID: "vpc-1", SubnetID: "subnet-2"}) {
		t.Fatalf("DescribeInstance = %+v", inst)
	}
	if _, err := DescribeInstance(ctx, api, "i-0b"); err == nil {
		t.Error("DescribeInstance of a missing instance succeeded")
	}

	// The instance's subnet wins over the rest of its VPC.
	if ep, err := FindEndpoint(ctx, api, inst, ""); err != nil || ep.ID != "eice-subnet" || ep.DNSName != "subnet.example.test:8443" {
		t.Errorf("FindEndpoint = %+v, %v; want eice-subnet", ep, err)
	}
	// Else any ready endpoint of the VPC.
	other := inst
	other.SubnetID = "subnet-7"
	if ep, err := FindEndpoint(ctx, api, other, ""); err != nil || ep.ID != "eice-vpc" {
		t.Errorf("FindEndpoint from another subnet = %+v, %v; want eice-vpc", ep, err)
	}
	// A VPC with none.
	other.VpcID = "vpc-5"
	if _, err := FindEndpoint(ctx, api, other, ""); !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), "vpc-5") {
		t.Errorf("FindEndpoint in a VPC without endpoints = %v, want ErrNoEndpoint naming the VPC", err)
	}
	// An endpoint without a DNS name cannot be reached.
	other.VpcID = "vpc-3"
	if _, err := FindEndpoint(ctx, api, other, ""); !errors.Is(err, ErrNoEndpoint) {
		t.Errorf("FindEndpoint with only an unreachable endpoint = %v, want ErrNoEndpoint", err)
	}

	// By id: it must be ready, wherever it is.
	if ep, err := FindEndpoint(ctx, api, inst, "eice-other"); err != nil || ep.DNSName != "other.example.test" {
		t.Errorf("FindEndpoint by id = %+v, %v", ep, err)
	}
	for id, want := range map[string]string{
		"eice-pending": "is create-in-progress",
		"eice-deleted": "is delete-complete",
		"eice-nope":    "was not found",
		"eice-empty":   "has no DNS name",
	} {
		if _, err := FindEndpoint(ctx, api, inst, id); !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), want) {
			t.Errorf("FindEndpoint(%s) = %v, want ErrNoEndpoint saying %q", id, err, want)
		}
	}
}
