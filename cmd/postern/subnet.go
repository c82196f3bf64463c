package main

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/postern-dev/postern/client"
)

func subnetCommands() []subcommand {
	return []subcommand{
		{"create", "declare a subnet inside a network", apiRunner(runSubnetCreate)},
		{"list", "list subnets", apiRunner(runSubnetList)},
		{"delete", "delete subnets (they must hold no live instances)", apiRunner(runSubnetDelete)},
	}
}

// subnetCIDR is the subnet's IPv4 CIDR, or its IPv6 one.
func subnetCIDR(s *ec2types.Subnet) string {
	if c := aws.ToString(s.CidrBlock); c != "" {
		return c
	}
	for _, a := range s.Ipv6CidrBlockAssociationSet {
		if c := aws.ToString(a.Ipv6CidrBlock); c != "" {
			return c
		}
	}
	return ""
}

func (m *Main) printSubnets(fs *clientFlags, subnets []ec2types.Subnet, single bool) error {
	if fs.json() {
		if single && len(subnets) == 1 {
			return m.printJSON(map[string]any{"Subnet": subnets[0]})
		}
		return m.printJSON(map[string]any{"Subnets": nonNil(subnets)})
	}
	rows := make([][]string, len(subnets))
	for i := range subnets {
		s := &subnets[i]
		rows[i] = []string{aws.ToString(s.SubnetId), aws.ToString(s.VpcId), subnetCIDR(s), aws.ToString(s.AvailabilityZone), string(s.State), formatTags(s.Tags)}
	}
	return m.table([]string{"SUBNET ID", "VPC ID", "CIDR", "ZONE", "STATE", "TAGS"}, rows)
}

func runSubnetCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("subnet create",
		"subnet create --vpc-id VPC_ID --cidr CIDR [--availability-zone ZONE] [--tag KEY=VALUE…] [--output table|json]",
		"postern subnet create --vpc-id vpc-0123456789abcdef0 --cidr 10.0.1.0/24 --tag Name=servers")
	vpcID := fs.String("vpc-id", "", "the `VPC` the subnet belongs to")
	cidr := fs.String("cidr", "", "the subnet's `CIDR`, inside the VPC's and overlapping no other subnet")
	zone := fs.String("availability-zone", "", "the availability `zone` to report (default: the region followed by \"a\")")
	tagPairs := tagFlag(fs, "a tag to set, `key=value` (repeatable)")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *vpcID == "" || *cidr == "" {
		return usagef("subnet create: --vpc-id and --cidr are required")
	}
	tags, err := ec2Tags(*tagPairs)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	in := &ec2.CreateSubnetInput{
		VpcId:             vpcID,
		AvailabilityZone:  optionalString(*zone),
		TagSpecifications: tagSpecifications(ec2types.ResourceTypeSubnet, tags),
	}
	// EC2 takes an IPv6 prefix in its own parameter.
	if strings.Contains(*cidr, ":") {
		in.Ipv6CidrBlock = cidr
	} else {
		in.CidrBlock = cidr
	}
	out, err := client.EC2(cfg).CreateSubnet(ctx, in)
	if err != nil {
		return err
	}
	return m.printSubnets(fs, []ec2types.Subnet{*out.Subnet}, true)
}

func runSubnetList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("subnet list", "subnet list [--vpc-id VPC_ID] [--filter NAME=V1,V2…] [--output table|json] [SUBNET_ID…]",
		"postern subnet list --vpc-id vpc-0123456789abcdef0")
	vpcID := fs.String("vpc-id", "", "list only the subnets of this `VPC`")
	filters := filterFlag(fs)
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	f, err := ec2Filters(*filters)
	if err != nil {
		return err
	}
	if *vpcID != "" {
		f = append(f, ec2types.Filter{Name: aws.String("vpc-id"), Values: []string{*vpcID}})
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var subnets []ec2types.Subnet
	p := ec2.NewDescribeSubnetsPaginator(client.EC2(cfg), &ec2.DescribeSubnetsInput{SubnetIds: ids, Filters: f})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		subnets = append(subnets, out.Subnets...)
	}
	return m.printSubnets(fs, subnets, false)
}

func runSubnetDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("subnet delete", "subnet delete [--output table|json] SUBNET_ID…",
		"postern subnet delete subnet-0123456789abcdef0")
	return m.eachID(ctx, fs, args, "delete", "SUBNET_ID", "Deleted %s.", func(ctx context.Context, cfg aws.Config, id string) error {
		_, err := client.EC2(cfg).DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(id)})
		return err
	})
}
