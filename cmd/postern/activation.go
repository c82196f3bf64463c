package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/postern-dev/postern/client"
)

const ssmTarget = "AmazonSSM"

func activationCommands() []subcommand {
	return []subcommand{
		{"create", "create an activation that agents register with", apiRunner(runActivationCreate)},
		{"list", "list activations", apiRunner(runActivationList)},
		{"delete", "delete an activation", apiRunner(runActivationDelete)},
	}
}

type ssmTag struct{ Key, Value string }

func runActivationCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("activation create", "activation create [--default-instance-name NAME] [--registration-limit N] [--expires 24h] [--vpc-id ID] [--tag k=v …]",
		"postern activation create --default-instance-name web --registration-limit 10 --tag env=prod\n"+
			"# on each host: postern agent register --server URL --activation-id ID --activation-code CODE")
	name := fs.String("default-instance-name", "", "Name tag of the instances it registers")
	limit := fs.Int("registration-limit", 1, "how many hosts may register with it")
	expires := fs.Duration("expires", 24*time.Hour, "how long it stays usable (at most 720h)")
	vpc := fs.String("vpc-id", "", "VPC the instances join (default: the VPC whose subnet holds their address)")
	desc := fs.String("description", "", "free text")
	var tags listFlag
	fs.Var(&tags, "tag", "key=value copied onto every instance it registers (repeatable)")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	in := map[string]any{"DefaultInstanceName": *name, "RegistrationLimit": *limit, "Description": *desc,
		"ExpirationDate": float64(time.Now().Add(*expires).Unix()), "IamRole": "postern-agent"}
	if *vpc != "" {
		in["VpcId"] = *vpc
	}
	var ts []ssmTag
	for _, t := range tags {
		k, v, err := keyValue("tag", t)
		if err != nil {
			return err
		}
		ts = append(ts, ssmTag{k, v})
	}
	in["Tags"] = nonNil(ts)
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var out struct{ ActivationId, ActivationCode string }
	if err := client.CallJSON(ctx, cfg, ssmTarget, "ssm", "CreateActivation", in, &out); err != nil {
		return err
	}
	if fs.json() {
		return m.printJSON(out)
	}
	fmt.Fprintf(m.Stdout, "ActivationId:   %s\nActivationCode: %s\n\nThe code is shown only now. On each host (as root):\n  postern agent install\n  postern agent register --server %s --activation-id %s --activation-code %s\n",
		out.ActivationId, out.ActivationCode, aws.ToString(cfg.BaseEndpoint), out.ActivationId, out.ActivationCode)
	return nil
}

type activationOut struct {
	ActivationId        string
	Description         string
	DefaultInstanceName string
	RegistrationLimit   int
	RegistrationsCount  int
	ExpirationDate      float64
	Expired             bool
	VpcId               string
	Tags                []ssmTag
}

func runActivationList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("activation list", "activation list [--output table|json]", "postern activation list")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var out struct{ ActivationList []activationOut }
	if err := client.CallJSON(ctx, cfg, ssmTarget, "ssm", "DescribeActivations", map[string]any{}, &out); err != nil {
		return err
	}
	if fs.json() {
		return m.printJSON(out)
	}
	rows := make([][]string, len(out.ActivationList))
	for i, a := range out.ActivationList {
		state := "active"
		if a.Expired {
			state = "expired"
		}
		rows[i] = []string{a.ActivationId, a.DefaultInstanceName, strconv.Itoa(a.RegistrationsCount) + "/" + strconv.Itoa(a.RegistrationLimit),
			time.Unix(int64(a.ExpirationDate), 0).UTC().Format(time.RFC3339), state,
			tagList(a.Tags, func(t ssmTag) (string, string) { return t.Key, t.Value })}
	}
	return m.table([]string{"ACTIVATION ID", "DEFAULT NAME", "REGISTERED", "EXPIRES", "STATE", "TAGS"}, rows)
}

func runActivationDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("activation delete", "activation delete ACTIVATION_ID…", "postern activation delete 5a1f…")
	return m.eachID(ctx, fs, args, "delete", "ACTIVATION_ID", "Deleted activation %s.", func(ctx context.Context, cfg aws.Config, id string) error {
		return client.CallJSON(ctx, cfg, ssmTarget, "ssm", "DeleteActivation", map[string]string{"ActivationId": id}, nil)
	})
}
