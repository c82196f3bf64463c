package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/postern-dev/postern/client"
)

func userCommands() []subcommand {
	return []subcommand{
		{"create", "create users", apiRunner(runUserCreate)},
		{"list", "list users", apiRunner(runUserList)},
		{"get", "show users", apiRunner(runUserGet)},
		{"delete", "delete users (they must have no keys, policies, groups, console password or MFA)", apiRunner(runUserDelete)},
		{"set-password", "set or change a user's web console password", apiRunner(runUserSetPassword)},
		{"enable-mfa", "give a user a TOTP second factor for the console", apiRunner(runUserEnableMFA)},
		{"disable-mfa", "remove a user's TOTP second factor", apiRunner(runUserDisableMFA)},
	}
}

var userHeader = []string{"USER", "USER ID", "ARN", "CREATED"}

func userRow(u *iamtypes.User) []string {
	return []string{aws.ToString(u.UserName), aws.ToString(u.UserId), aws.ToString(u.Arn), formatTime(u.CreateDate)}
}

// formatTime prints a time in UTC to the second, or "" for none.
func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func runUserCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user create", "user create [--output table|json] NAME…",
		"postern user create alice bob\npostern access-key create --user alice")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("user create: want at least one NAME")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	var users []iamtypes.User
	for _, name := range names {
		out, err := svc.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("create user %s: %w", name, client.Clean(err))
		}
		users = append(users, *out.User)
	}
	return m.printUsers(fs, users, len(names) == 1)
}

func runUserGet(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user get", "user get [--output table|json] [NAME…]",
		"postern user get alice\npostern user get            # the caller itself")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	if len(names) == 0 {
		// IAM answers for the caller when no name is given.
		names = []string{""}
	}
	var users []iamtypes.User
	for _, name := range names {
		in := &iam.GetUserInput{}
		if name != "" {
			in.UserName = aws.String(name)
		}
		out, err := svc.GetUser(ctx, in)
		if err != nil {
			if name == "" {
				return client.Clean(err)
			}
			return fmt.Errorf("user %s: %w", name, client.Clean(err))
		}
		users = append(users, *out.User)
	}
	return m.printUsers(fs, users, len(names) == 1)
}

// printUsers prints {"User":…} for one user asked for by name, as the AWS
// CLI does, and {"Users":[…]} otherwise.
func (m *Main) printUsers(fs *clientFlags, users []iamtypes.User, single bool) error {
	if fs.json() {
		if single && len(users) == 1 {
			return m.printJSON(map[string]any{"User": users[0]})
		}
		return m.printJSON(map[string]any{"Users": nonNil(users)})
	}
	rows := make([][]string, len(users))
	for i := range users {
		rows[i] = userRow(&users[i])
	}
	return m.table(userHeader, rows)
}

func runUserList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user list", "user list [--output table|json]",
		"postern user list\npostern user list --output json | jq -r '.Users[].UserName'")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var users []iamtypes.User
	p := iam.NewListUsersPaginator(client.IAM(cfg), &iam.ListUsersInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		users = append(users, out.Users...)
	}
	return m.printUsers(fs, users, false)
}

func runUserDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user delete", "user delete [--output table|json] NAME…",
		"postern access-key delete --user alice AKIAEXAMPLEEXAMPLE12\npostern user delete alice")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return usagef("user delete: want at least one NAME")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	for _, name := range names {
		if _, err := svc.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String(name)}); err != nil {
			return fmt.Errorf("delete user %s: %w", name, client.Clean(err))
		}
		m.done(fs, "Deleted user %s.", name)
	}
	return nil
}
