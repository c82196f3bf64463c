package main

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/postern-dev/postern/client"
)

func accessKeyCommands() []subcommand {
	return []subcommand{
		{"create", "create an access key (its secret is shown once)", apiRunner(runAccessKeyCreate)},
		{"list", "list a user's access keys", apiRunner(runAccessKeyList)},
		{"deactivate", "stop an access key from signing requests", apiRunner(accessKeyStatus("deactivate", iamtypes.StatusTypeInactive))},
		{"activate", "let a deactivated access key sign requests again", apiRunner(accessKeyStatus("activate", iamtypes.StatusTypeActive))},
		{"delete", "delete access keys", apiRunner(runAccessKeyDelete)},
	}
}

// userFlag adds --user; without it, IAM acts on the caller's own user.
func userFlag(fs *clientFlags) *string {
	return fs.String("user", "", "the `user` whose keys to manage (default: the caller)")
}

func optionalString(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

func runAccessKeyCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("access-key create", "access-key create [--user USER] [--output table|json]",
		"postern access-key create --user alice\n"+
			"postern access-key create --user ci --output json | jq -r .AccessKey.SecretAccessKey")
	user := userFlag(fs)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	out, err := client.IAM(cfg).CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: optionalString(*user)})
	if err != nil {
		return err
	}
	k := out.AccessKey
	// This is the one place where a secret is printed: IAM shows it once
	// and keeps it only sealed.
	if fs.json() {
		return m.printJSON(map[string]any{"AccessKey": k})
	}
	fmt.Fprintf(m.Stdout, "Created an access key for user %s.\n\n", aws.ToString(k.UserName))
	fmt.Fprintf(m.Stdout, "  AccessKeyId:      %s\n", aws.ToString(k.AccessKeyId))
	fmt.Fprintf(m.Stdout, "  SecretAccessKey:  %s\n\n", aws.ToString(k.SecretAccessKey))
	fmt.Fprintf(m.Stdout, "The secret access key is shown only this once; store it now.\n")
	fmt.Fprintf(m.Stdout, "Use it with: export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=<the secret above>\n", aws.ToString(k.AccessKeyId))
	return nil
}

func runAccessKeyList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("access-key list", "access-key list [--user USER] [--output table|json]",
		"postern access-key list --user alice")
	user := userFlag(fs)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var keys []iamtypes.AccessKeyMetadata
	p := iam.NewListAccessKeysPaginator(client.IAM(cfg), &iam.ListAccessKeysInput{UserName: optionalString(*user)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		keys = append(keys, out.AccessKeyMetadata...)
	}
	if fs.json() {
		return m.printJSON(map[string]any{"AccessKeyMetadata": nonNil(keys)})
	}
	rows := make([][]string, len(keys))
	for i, k := range keys {
		rows[i] = []string{aws.ToString(k.AccessKeyId), aws.ToString(k.UserName), string(k.Status), formatTime(k.CreateDate)}
	}
	return m.table([]string{"ACCESS KEY ID", "USER", "STATUS", "CREATED"}, rows)
}

func accessKeyStatus(verb string, status iamtypes.StatusType) func(context.Context, *Main, []string) error {
	return func(ctx context.Context, m *Main, args []string) error {
		fs := m.newClientFlagSet("access-key "+verb, "access-key "+verb+" [--user USER] ACCESS_KEY_ID…",
			"postern access-key "+verb+" --user alice AKIAEXAMPLEEXAMPLE12")
		user := userFlag(fs)
		ids, err := fs.parseArgs(args)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return usagef("access-key %s: want at least one ACCESS_KEY_ID", verb)
		}
		cfg, err := connect(ctx)
		if err != nil {
			return err
		}
		svc := client.IAM(cfg)
		for _, id := range ids {
			_, err := svc.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{AccessKeyId: aws.String(id), Status: status, UserName: optionalString(*user)})
			if err != nil {
				return fmt.Errorf("%s %s: %w", verb, id, client.Clean(err))
			}
			m.done(fs, "Access key %s is now %s.", id, status)
		}
		return nil
	}
}

func runAccessKeyDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("access-key delete", "access-key delete [--user USER] ACCESS_KEY_ID…",
		"postern access-key delete --user alice AKIAEXAMPLEEXAMPLE12")
	user := userFlag(fs)
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usagef("access-key delete: want at least one ACCESS_KEY_ID")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	for _, id := range ids {
		if _, err := svc.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{AccessKeyId: aws.String(id), UserName: optionalString(*user)}); err != nil {
			return fmt.Errorf("delete %s: %w", id, client.Clean(err))
		}
		m.done(fs, "Deleted access key %s.", id)
	}
	return nil
}
