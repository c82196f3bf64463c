package main

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/postern-dev/postern/client"
)

func tagCommands() []subcommand {
	return []subcommand{
		{"add", "add or overwrite tags on instances, VPCs and subnets", apiRunner(runTagAdd)},
		{"remove", "remove tags by key", apiRunner(runTagRemove)},
	}
}

func runTagAdd(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("tag add", "tag add RESOURCE_ID… --tag KEY=VALUE…",
		"postern tag add i-0123456789abcdef0 --tag Name=web-1 --tag team=payments")
	pairs := tagFlag(fs, "a tag to set, `key=value` (repeatable; key= for an empty value)")
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(ids) == 0 || len(*pairs) == 0 {
		return usagef("tag add: want at least one RESOURCE_ID and one --tag")
	}
	tags, err := ec2Tags(*pairs)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	// EC2 applies the tags to all resources or to none.
	if _, err := client.EC2(cfg).CreateTags(ctx, &ec2.CreateTagsInput{Resources: ids, Tags: tags}); err != nil {
		return err
	}
	m.done(fs, "Tagged %s.", strings.Join(ids, ", "))
	return nil
}

func runTagRemove(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("tag remove", "tag remove RESOURCE_ID… --key KEY…",
		"postern tag remove i-0123456789abcdef0 --key team")
	var keys listFlag
	fs.Var(&keys, "key", "a tag `key` to remove, whatever its value (repeatable)")
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(ids) == 0 || len(keys) == 0 {
		return usagef("tag remove: want at least one RESOURCE_ID and one --key")
	}
	tags := make([]ec2types.Tag, len(keys))
	for i, k := range keys {
		// A tag without a value removes the key whatever its value.
		tags[i] = ec2types.Tag{Key: aws.String(k)}
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	if _, err := client.EC2(cfg).DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: ids, Tags: tags}); err != nil {
		return err
	}
	m.done(fs, "Removed tags %s from %s.", strings.Join(keys, ", "), strings.Join(ids, ", "))
	return nil
}
