package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/postern-dev/postern/client"
)

func groupCommands() []subcommand {
	return []subcommand{
		{"create", "create groups", apiRunner(runGroupCreate)},
		{"list", "list groups, or a user's groups with --user", apiRunner(runGroupList)},
		{"get", "show a group and its members", apiRunner(runGroupGet)},
		{"delete", "delete groups (they must have no members or policies)", apiRunner(runGroupDelete)},
		{"add-user", "add users to a group", apiRunner(groupMembership("add-user"))},
		{"remove-user", "remove users from a group", apiRunner(groupMembership("remove-user"))},
	}
}

var groupHeader = []string{"GROUP", "GROUP ID", "ARN", "CREATED"}

func groupRow(g *iamtypes.Group) []string {
	return []string{aws.ToString(g.GroupName), aws.ToString(g.GroupId), aws.ToString(g.Arn), formatTime(g.CreateDate)}
}

func (m *Main) printGroups(fs *clientFlags, groups []iamtypes.Group, single bool) error {
	if fs.json() {
		if single && len(groups) == 1 {
			return m.printJSON(map[string]any{"Group": groups[0]})
		}
		return m.printJSON(map[string]any{"Groups": nonNil(groups)})
	}
	rows := make([][]string, len(groups))
	for i := range groups {
		rows[i] = groupRow(&groups[i])
	}
	return m.table(groupHeader, rows)
}

func runGroupCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("group create", "group create [--output table|json] NAME…",
		"postern group create developers\npostern group add-user developers alice bob")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("group create: want at least one NAME")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	var groups []iamtypes.Group
	for _, name := range names {
		out, err := svc.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("create group %s: %w", name, client.Clean(err))
		}
		groups = append(groups, *out.Group)
	}
	return m.printGroups(fs, groups, len(names) == 1)
}

func runGroupList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("group list", "group list [--user USER] [--output table|json]",
		"postern group list\npostern group list --user alice")
	user := fs.String("user", "", "list only the groups this `user` belongs to")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	var groups []iamtypes.Group
	if *user != "" {
		p := iam.NewListGroupsForUserPaginator(svc, &iam.ListGroupsForUserInput{UserName: user})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			groups = append(groups, out.Groups...)
		}
	} else {
		p := iam.NewListGroupsPaginator(svc, &iam.ListGroupsInput{})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			groups = append(groups, out.Groups...)
		}
	}
	return m.printGroups(fs, groups, false)
}

func runGroupGet(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("group get", "group get [--output table|json] NAME",
		"postern group get developers")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usagef("group get: want one group NAME")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var group *iamtypes.Group
	var users []iamtypes.User
	p := iam.NewGetGroupPaginator(client.IAM(cfg), &iam.GetGroupInput{GroupName: aws.String(names[0])})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		group = out.Group
		users = append(users, out.Users...)
	}
	if fs.json() {
		return m.printJSON(map[string]any{"Group": group, "Users": nonNil(users)})
	}
	members := make([]string, len(users))
	for i, u := range users {
		members[i] = aws.ToString(u.UserName)
	}
	row := append(groupRow(group), strings.Join(members, ","))
	return m.table(append(groupHeader, "MEMBERS"), [][]string{row})
}

func runGroupDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("group delete", "group delete [--output table|json] NAME…",
		"postern group remove-user developers alice\npostern group delete developers")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("group delete: want at least one NAME")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	for _, name := range names {
		if _, err := svc.DeleteGroup(ctx, &iam.DeleteGroupInput{GroupName: aws.String(name)}); err != nil {
			return fmt.Errorf("delete group %s: %w", name, client.Clean(err))
		}
		m.done(fs, "Deleted group %s.", name)
	}
	return nil
}

// groupMembership is "group add-user" and "group remove-user".
func groupMembership(verb string) func(context.Context, *Main, []string) error {
	return func(ctx context.Context, m *Main, args []string) error {
		fs := m.newClientFlagSet("group "+verb, "group "+verb+" GROUP USER…",
			"postern group "+verb+" developers alice bob")
		pos, err := fs.parseArgs(args)
		if err != nil {
			return err
		}
		if len(pos) < 2 {
			return usagef("group %s: want GROUP and at least one USER", verb)
		}
		group, users := pos[0], pos[1:]
		cfg, err := connect(ctx)
		if err != nil {
			return err
		}
		svc := client.IAM(cfg)
		for _, u := range users {
			if verb == "add-user" {
				_, err = svc.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String(group), UserName: aws.String(u)})
			} else {
				_, err = svc.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{GroupName: aws.String(group), UserName: aws.String(u)})
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", verb, u, client.Clean(err))
			}
			if verb == "add-user" {
				m.done(fs, "Added %s to group %s.", u, group)
			} else {
				m.done(fs, "Removed %s from group %s.", u, group)
			}
		}
		return nil
	}
}
