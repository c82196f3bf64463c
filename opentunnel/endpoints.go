package opentunnel

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// EC2API is the part of the EC2 client that finding a tunnel's way needs.
// *ec2.Client implements it.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	DescribeInstanceConnectEndpoints(ctx context.Context, in *ec2.DescribeInstanceConnectEndpointsInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstanceConnectEndpointsOutput, error)
}

// Instance is what a tunnel needs to know of its target.
type Instance struct {
	ID        string
	PrivateIP string
	VpcID     string
	SubnetID  string
}

// DescribeInstance looks an instance up by id.
func DescribeInstance(ctx context.Context, api EC2API, id string) (Instance, error) {
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return Instance{}, err
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if aws.ToString(i.InstanceId) != id {
				continue
			}
			inst := Instance{ID: id, PrivateIP: aws.ToString(i.PrivateIpAddress), VpcID: aws.ToString(i.VpcId), SubnetID: aws.ToString(i.SubnetId)}
			if inst.PrivateIP == "" {
				return Instance{}, fmt.Errorf("instance %s has no private IP address to tunnel to", id)
			}
			return inst, nil
		}
	}
	return Instance{}, fmt.Errorf("instance %s was not found", id)
}

// Endpoint is an Instance Connect Endpoint a tunnel can go through.
type Endpoint struct {
	ID       string
	DNSName  string
	VpcID    string
	SubnetID string
	// State is the endpoint's EC2 state (create-complete, …); empty when
	// unknown, as for an endpoint given by id and DNS name.
	State string
}

// ErrNoEndpoint says that no Instance Connect Endpoint can carry the
// tunnel.
var ErrNoEndpoint = errors.New("no Instance Connect Endpoint is available")

// openStates are the states in which an endpoint opens tunnels; the AWS
// CLI accepts the same.
var openStates = []string{"create-complete", "update-in-progress", "update-failed", "update-complete"}

// FindEndpoint chooses the endpoint a tunnel goes through, as the AWS CLI
// does: endpointID when given (it must be ready), else a ready endpoint of
// the instance's VPC, preferring one in its subnet (PickEndpoint among the
// VPC's endpoints that DescribeInstanceConnectEndpoints lists). When there
// is none the error wraps ErrNoEndpoint.
func FindEndpoint(ctx context.Context, api EC2API, inst Instance, endpointID string) (Endpoint, error) {
	if endpointID != "" {
		return endpointByID(ctx, api, endpointID)
	}
	if inst.VpcID == "" {
		return PickEndpoint(inst, nil)
	}
	in := &ec2.DescribeInstanceConnectEndpointsInput{Filters: []ec2types.Filter{
		{Name: aws.String("state"), Values: openStates},
		{Name: aws.String("vpc-id"), Values: []string{inst.VpcID}},
	}}
	var candidates []Endpoint
	for p := ec2.NewDescribeInstanceConnectEndpointsPaginator(api, in); p.HasMorePages(); {
		out, err := p.NextPage(ctx)
		if err != nil {
			return Endpoint{}, err
		}
		for _, e := range out.InstanceConnectEndpoints {
			candidates = append(candidates, endpointOf(e))
		}
	}
	return PickEndpoint(inst, candidates)
}

// PickEndpoint chooses, among candidates, the endpoint a tunnel to inst
// goes through: one of the instance's VPC that is ready (Usable),
// preferably in its subnet, else the first. It is the one rule that
// FindEndpoint (postern ssh, proxy, open-tunnel) and the web console's
// terminal, which lists endpoints from the server's store, both follow.
// When none fits the error wraps ErrNoEndpoint.
func PickEndpoint(inst Instance, candidates []Endpoint) (Endpoint, error) {
	if inst.VpcID == "" {
		return Endpoint{}, fmt.Errorf("%w: instance %s is in no VPC", ErrNoEndpoint, inst.ID)
	}
	var first *Endpoint
	for i := range candidates {
		ep := &candidates[i]
		if ep.VpcID != inst.VpcID || ep.Usable() != nil {
			continue
		}
		if inst.SubnetID != "" && ep.SubnetID == inst.SubnetID {
			return *ep, nil
		}
		if first == nil {
			first = ep
		}
	}
	if first != nil {
		return *first, nil
	}
	return Endpoint{}, fmt.Errorf("%w in %s for instance %s: create one with 'postern endpoint create --subnet-id %s' (or connect directly with --connection-type direct)",
		ErrNoEndpoint, inst.VpcID, inst.ID, orPlaceholder(inst.SubnetID))
}

// Usable says why the endpoint cannot carry tunnels now (an error wrapping
// ErrNoEndpoint), or nil: it is in a state that opens tunnels and has a
// DNS name (its process joined).
func (e Endpoint) Usable() error {
	open := false
	for _, s := range openStates {
		open = open || e.State == s
	}
	switch {
	case !open:
		return fmt.Errorf("%w: Instance Connect Endpoint %s is %s", ErrNoEndpoint, e.ID, e.State)
	case e.DNSName == "":
		return fmt.Errorf("%w: Instance Connect Endpoint %s has no DNS name yet (its process has not joined)", ErrNoEndpoint, e.ID)
	}
	return nil
}

func endpointByID(ctx context.Context, api EC2API, id string) (Endpoint, error) {
	out, err := api.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: []string{id}})
	if err != nil {
		return Endpoint{}, err
	}
	for _, e := range out.InstanceConnectEndpoints {
		if aws.ToString(e.InstanceConnectEndpointId) != id {
			continue
		}
		ep := endpointOf(e)
		if err := ep.Usable(); err != nil {
			return Endpoint{}, err
		}
		return ep, nil
	}
	return Endpoint{}, fmt.Errorf("%w: Instance Connect Endpoint %s was not found", ErrNoEndpoint, id)
}

func endpointOf(e ec2types.Ec2InstanceConnectEndpoint) Endpoint {
	return Endpoint{ID: aws.ToString(e.InstanceConnectEndpointId), DNSName: aws.ToString(e.DnsName),
		VpcID: aws.ToString(e.VpcId), SubnetID: aws.ToString(e.SubnetId), State: string(e.State)}
}

func orPlaceholder(s string) string {
	if s == "" {
		return "SUBNET"
	}
	return s
}
