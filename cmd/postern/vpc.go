package main

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/postern-dev/postern/client"
)

func vpcCommands() []subcommand {
	return []subcommand{
		{"create", "declare a network by its CIDR", apiRunner(runVPCCreate)},
		{"list", "list networks", apiRunner(runVPCList)},
		{"delete", "delete networks (they must have no subnets)", apiRunner(runVPCDelete)},
	}
}

// tagFlag is a repeatable --tag key=value.
func tagFlag(fs *clientFlags, usage string) *listFlag {
	var l listFlag
	fs.Var(&l, "tag", usage)
	return &l
}

// ec2Tags parses key=value pairs.
func ec2Tags(pairs []string) ([]ec2types.Tag, error) {
	tags := make([]ec2types.Tag, 0, len(pairs))
	for _, p := range pairs {
		k, v, err := keyValue("tag", p)
		if err != nil {
			return nil, err
		}
		tags = append(tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return tags, nil
}

// tagSpecifications tags a resource as it is created.
func tagSpecifications(kind ec2types.ResourceType, tags []ec2types.Tag) []ec2types.TagSpecification {
	if len(tags) == 0 {
		return nil
	}
	return []ec2types.TagSpecification{{ResourceType: kind, Tags: tags}}
}

func formatTags(tags []ec2types.Tag) string {
	return tagList(tags, func(t ec2types.Tag) (string, string) { return aws.ToString(t.Key), aws.ToString(t.Value) })
}

// vpcCIDR is the VPC's IPv4 CIDR, or its IPv6 one.
func vpcCIDR(v *ec2types.Vpc) string {
	if c := aws.ToString(v.CidrBlock); c != "" {
		return c
	}
	for _, a := range v.Ipv6CidrBlockAssociationSet {
		if c := aws.ToString(a.Ipv6CidrBlock); c != "" {
			return c
		}
	}
	return ""
}

func (m *Main) printVPCs(fs *clientFlags, vpcs []ec2types.Vpc, single bool) error {
	if fs.json() {
		if single && len(vpcs) == 1 {
			return m.printJSON(map[string]any{"Vpc": vpcs[0]})
		}
		return m.printJSON(map[string]any{"Vpcs": nonNil(vpcs)})
	}
	rows := make([][]string, len(vpcs))
	for i := range vpcs {
		v := &vpcs[i]
		rows[i] = []string{aws.ToString(v.VpcId), vpcCIDR(v), string(v.State), formatTags(v.Tags)}
	}
	return m.table([]string{"VPC ID", "CIDR", "STATE", "TAGS"}, rows)
}

func runVPCCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("vpc create", "vpc create --cidr CIDR [--tag KEY=VALUE…] [--output table|json]",
		"postern vpc create --cidr 10.0.0.0/16 --tag Name=office\npostern subnet create --vpc-id vpc-… --cidr 10.0.1.0/24")
	cidr := fs.String("cidr", "", "the network's IPv4 (/8 to /28) or IPv6 (/32 to /64) `CIDR`")
	tagPairs := tagFlag(fs, "a tag to set, `key=value` (repeatable)")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *cidr == "" {
		return usagef("vpc create: --cidr is required")
	}
	tags, err := ec2Tags(*tagPairs)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	out, err := client.EC2(cfg).CreateVpc(ctx, &ec2.CreateVpcInput{
		CidrBlock:         cidr,
		TagSpecifications: tagSpecifications(ec2types.ResourceTypeVpc, tags),
	})
	if err != nil {
		return err
	}
	return m.printVPCs(fs, []ec2types.Vpc{*out.Vpc}, true)
}

func runVPCList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("vpc list", "vpc list [--filter NAME=V1,V2…] [--output table|json] [VPC_ID…]",
		"postern vpc list\npostern vpc list --filter tag:Name=office")
	filters := filterFlag(fs)
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	f, err := ec2Filters(*filters)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var vpcs []ec2types.Vpc
	p := ec2.NewDescribeVpcsPaginator(client.EC2(cfg), &ec2.DescribeVpcsInput{VpcIds: ids, Filters: f})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		vpcs = append(vpcs, out.Vpcs...)
	}
	return m.printVPCs(fs, vpcs, false)
}

func runVPCDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("vpc delete", "vpc delete [--output table|json] VPC_ID…",
		"postern vpc delete vpc-0123456789abcdef0")
	return m.eachID(ctx, fs, args, "delete", "VPC_ID", "Deleted %s.", func(ctx context.Context, cfg aws.Config, id string) error {
		_, err := client.EC2(cfg).DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(id)})
		return err
	})
}

// filterFlag is a repeatable --filter name=v1,v2, as EC2 filters: values
// of one filter are alternatives, filters combine with AND.
func filterFlag(fs *clientFlags) *listFlag {
	var l listFlag
	fs.Var(&l, "filter", "an EC2 filter `name=value[,value…]` such as tag:Name=web or vpc-id=vpc-… (repeatable; values may use * and ?)")
	return &l
}

func ec2Filters(specs []string) ([]ec2types.Filter, error) {
	var out []ec2types.Filter
	for _, s := range specs {
		name, values, err := keyValue("filter", s)
		if err != nil {
			return nil, err
		}
		out = append(out, ec2types.Filter{Name: aws.String(name), Values: strings.Split(values, ",")})
	}
	return out, nil
}
