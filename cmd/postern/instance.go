package main

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/postern-dev/postern/client"
)

func instanceCommands() []subcommand {
	return []subcommand{
		{"list", "list instances", apiRunner(runInstanceList)},
		{"deregister", "terminate instances: their agents may no longer connect", apiRunner(runInstanceDeregister)},
	}
}

func runInstanceList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("instance list", "instance list [--filter NAME=V1,V2…] [--output table|json] [INSTANCE_ID…]",
		"postern instance list\n"+
			"postern instance list --filter tag:Name=web-* --filter instance-state-name=running,pending")
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
	var instances []ec2types.Instance
	p := ec2.NewDescribeInstancesPaginator(client.EC2(cfg), &ec2.DescribeInstancesInput{InstanceIds: ids, Filters: f})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, r := range out.Reservations {
			instances = append(instances, r.Instances...)
		}
	}
	if fs.json() {
		// Postern makes one reservation per instance; a flat list is what
		// a reader wants.
		return m.printJSON(map[string]any{"Instances": nonNil(instances)})
	}
	rows := make([][]string, len(instances))
	for i := range instances {
		in := &instances[i]
		state := ""
		if in.State != nil {
			state = string(in.State.Name)
		}
		rows[i] = []string{aws.ToString(in.InstanceId), ec2TagValue(in.Tags, "Name"), state,
			aws.ToString(in.PrivateIpAddress), aws.ToString(in.PublicIpAddress), aws.ToString(in.SubnetId)}
	}
	return m.table([]string{"INSTANCE ID", "NAME", "STATE", "PRIVATE IP", "PUBLIC IP", "SUBNET"}, rows)
}

func ec2TagValue(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

func runInstanceDeregister(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("instance deregister", "instance deregister INSTANCE_ID…", "postern instance deregister i-0123456789abcdef0")
	return m.eachID(ctx, fs, args, "deregister", "INSTANCE_ID", "Deregistered %s (terminated).", func(ctx context.Context, cfg aws.Config, id string) error {
		return client.CallJSON(ctx, cfg, ssmTarget, "ssm", "DeregisterManagedInstance", map[string]string{"InstanceId": id}, nil)
	})
}
