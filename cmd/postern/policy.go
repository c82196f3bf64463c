package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/postern-dev/postern/client"
)

func policyCommands() []subcommand {
	return []subcommand{
		{"put", "create or replace an inline policy of a user or group", apiRunner(runPolicyPut)},
		{"get", "print an inline policy document", apiRunner(runPolicyGet)},
		{"list", "list inline policies", apiRunner(runPolicyList)},
		{"delete", "delete an inline policy", apiRunner(runPolicyDelete)},
		{"simulate", "show what a user's policies decide for actions", apiRunner(runPolicySimulate)},
	}
}

// policyOwner is the --user or --group a policy command works on.
type policyOwner struct {
	user, group *string
}

func ownerFlags(fs *clientFlags) policyOwner {
	return policyOwner{
		user:  fs.String("user", "", "the `user` that owns the policy"),
		group: fs.String("group", "", "the `group` that owns the policy"),
	}
}

// check requires exactly one of --user and --group, or at most one when
// optional.
func (o policyOwner) check(cmd string, optional bool) error {
	switch {
	case *o.user != "" && *o.group != "":
		return usagef("%s: give --user or --group, not both", cmd)
	case !optional && *o.user == "" && *o.group == "":
		return usagef("%s: --user or --group is required", cmd)
	}
	return nil
}

// readDocument returns a policy document given as JSON text, as
// file://PATH (as the AWS CLI takes it) or as "-" for standard input.
func (m *Main) readDocument(arg string) (string, error) {
	var b []byte
	var err error
	switch {
	case arg == "":
		return "", usagef("policy put: --document is required")
	case arg == "-":
		b, err = io.ReadAll(io.LimitReader(m.Stdin, 1<<20))
	case strings.HasPrefix(arg, "file://"):
		b, err = os.ReadFile(strings.TrimPrefix(arg, "file://"))
	default:
		return arg, nil
	}
	if err != nil {
		return "", fmt.Errorf("read the policy document: %w", err)
	}
	return string(b), nil
}

func runPolicyPut(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("policy put",
		"policy put (--user USER | --group GROUP) --name NAME --document file://FILE|JSON|-",
		`postern policy put --group developers --name ReadInventory --document file://read-inventory.json
postern policy put --user alice --name Connect --document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2-instance-connect:*","Resource":"*"}]}'`)
	owner := ownerFlags(fs)
	name := fs.String("name", "", "the policy `name`")
	doc := fs.String("document", "", "the policy `document`: JSON text, file://PATH, or - for standard input")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if err := owner.check("policy put", false); err != nil {
		return err
	}
	if *name == "" {
		return usagef("policy put: --name is required")
	}
	text, err := m.readDocument(*doc)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	// The server checks the document and names the field that is wrong;
	// checking here too would only risk disagreeing with it.
	if *owner.user != "" {
		_, err = svc.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: owner.user, PolicyName: name, PolicyDocument: aws.String(text)})
		if err == nil {
			m.done(fs, "Put policy %s on user %s.", *name, *owner.user)
		}
	} else {
		_, err = svc.PutGroupPolicy(ctx, &iam.PutGroupPolicyInput{GroupName: owner.group, PolicyName: name, PolicyDocument: aws.String(text)})
		if err == nil {
			m.done(fs, "Put policy %s on group %s.", *name, *owner.group)
		}
	}
	return err
}

func runPolicyGet(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("policy get", "policy get (--user USER | --group GROUP) --name NAME [--output table|json]",
		"postern policy get --user admin --name AdministratorAccess")
	owner := ownerFlags(fs)
	name := fs.String("name", "", "the policy `name`")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if err := owner.check("policy get", false); err != nil {
		return err
	}
	if *name == "" {
		return usagef("policy get: --name is required")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	var encoded string
	out := map[string]any{"PolicyName": *name}
	if *owner.user != "" {
		r, err := svc.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: owner.user, PolicyName: name})
		if err != nil {
			return err
		}
		encoded, out["UserName"] = aws.ToString(r.PolicyDocument), *owner.user
	} else {
		r, err := svc.GetGroupPolicy(ctx, &iam.GetGroupPolicyInput{GroupName: owner.group, PolicyName: name})
		if err != nil {
			return err
		}
		encoded, out["GroupName"] = aws.ToString(r.PolicyDocument), *owner.group
	}
	// IAM sends documents URL-encoded.
	text, err := url.PathUnescape(encoded)
	if err != nil {
		text = encoded
	}
	var doc any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return fmt.Errorf("the server returned a policy document that is not JSON: %v", err)
	}
	if fs.json() {
		out["PolicyDocument"] = doc
		return writeIndented(m.Stdout, out)
	}
	// In table form the document itself is the most useful thing to show.
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(text), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = m.Stdout.Write(buf.Bytes())
	return err
}

// ownedPolicy is one row of "policy list".
type ownedPolicy struct {
	UserName   string `json:",omitempty"`
	GroupName  string `json:",omitempty"`
	PolicyName string
}

func runPolicyList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("policy list", "policy list [--user USER | --group GROUP] [--output table|json]",
		"postern policy list --user alice\npostern policy list            # every user's and group's policies")
	owner := ownerFlags(fs)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if err := owner.check("policy list", true); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	var users, groups []string
	switch {
	case *owner.user != "":
		users = []string{*owner.user}
	case *owner.group != "":
		groups = []string{*owner.group}
	default:
		// No owner: the whole account, users first.
		up := iam.NewListUsersPaginator(svc, &iam.ListUsersInput{})
		for up.HasMorePages() {
			out, err := up.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, u := range out.Users {
				users = append(users, aws.ToString(u.UserName))
			}
		}
		gp := iam.NewListGroupsPaginator(svc, &iam.ListGroupsInput{})
		for gp.HasMorePages() {
			out, err := gp.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, g := range out.Groups {
				groups = append(groups, aws.ToString(g.GroupName))
			}
		}
	}
	policies := []ownedPolicy{}
	for _, u := range users {
		p := iam.NewListUserPoliciesPaginator(svc, &iam.ListUserPoliciesInput{UserName: aws.String(u)})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("user %s: %w", u, client.Clean(err))
			}
			for _, n := range out.PolicyNames {
				policies = append(policies, ownedPolicy{UserName: u, PolicyName: n})
			}
		}
	}
	for _, g := range groups {
		p := iam.NewListGroupPoliciesPaginator(svc, &iam.ListGroupPoliciesInput{GroupName: aws.String(g)})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("group %s: %w", g, client.Clean(err))
			}
			for _, n := range out.PolicyNames {
				policies = append(policies, ownedPolicy{GroupName: g, PolicyName: n})
			}
		}
	}
	if fs.json() {
		return m.printJSON(map[string]any{"Policies": policies})
	}
	rows := make([][]string, len(policies))
	for i, p := range policies {
		if p.UserName != "" {
			rows[i] = []string{"user/" + p.UserName, p.PolicyName}
		} else {
			rows[i] = []string{"group/" + p.GroupName, p.PolicyName}
		}
	}
	return m.table([]string{"OWNER", "POLICY"}, rows)
}

func runPolicyDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("policy delete", "policy delete (--user USER | --group GROUP) --name NAME",
		"postern policy delete --group developers --name ReadInventory")
	owner := ownerFlags(fs)
	name := fs.String("name", "", "the policy `name`")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if err := owner.check("policy delete", false); err != nil {
		return err
	}
	if *name == "" {
		return usagef("policy delete: --name is required")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	if *owner.user != "" {
		_, err = svc.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: owner.user, PolicyName: name})
	} else {
		_, err = svc.DeleteGroupPolicy(ctx, &iam.DeleteGroupPolicyInput{GroupName: owner.group, PolicyName: name})
	}
	if err != nil {
		return err
	}
	m.done(fs, "Deleted policy %s.", *name)
	return nil
}

// simulateDenied is the exit status of "policy simulate" when any request
// would be denied; 1 and 2 already mean "failed" and "misused".
const simulateDenied = 3

// simulateResult is one decision of SimulatePrincipalPolicy, including
// Postern's extension elements that the SDK's model does not know.
type simulateResult struct {
	EvalActionName    string
	EvalResourceName  string
	EvalDecision      string
	MatchedStatements []struct {
		SourcePolicyID   string `xml:"SourcePolicyId" json:"SourcePolicyId"`
		SourcePolicyType string
		StatementSid     string `xml:"PosternStatementSid" json:",omitempty"`
		StatementIndex   int    `xml:"PosternStatementIndex"`
	} `xml:"MatchedStatements>member"`
}

func runPolicySimulate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("policy simulate",
		"policy simulate --user USER --action ACTION [--action ACTION…] [--resource ARN…] [--context KEY=VALUE…]\n\n"+
			"Prints, for each action and resource, allowed, explicitDeny or implicitDeny and the\n"+
			"statement that decided. Exit status: 0 when every request is allowed, 3 when any\n"+
			"is denied, 1 on errors, 2 on misuse.",
		"postern policy simulate --user alice --action ec2-instance-connect:SendSSHPublicKey \\\n"+
			"    --resource arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0 \\\n"+
			"    --context ec2:osuser=ubuntu --context aws:SourceIp=10.0.0.5\n"+
			"postern policy simulate --user bob --action iam:CreateUser && echo bob may create users")
	user := fs.String("user", "", "the `user` (name or ARN) whose policies to evaluate")
	var actions, resources, contexts listFlag
	fs.Var(&actions, "action", "an `action` such as ec2:DescribeVpcs (repeatable)")
	fs.Var(&resources, "resource", "a resource `ARN` (repeatable; default *)")
	fs.Var(&contexts, "context", "a condition key and its value, `key=value` (repeatable; repeat a key to give it several values)")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *user == "" {
		return usagef("policy simulate: --user is required")
	}
	if len(actions) == 0 {
		return usagef("policy simulate: at least one --action is required")
	}
	// Values are split at the first "=" only and never at commas: ARNs,
	// user agents and dates may contain both.
	var keys []string
	values := map[string][]string{}
	for _, c := range contexts {
		k, v, err := keyValue("context", c)
		if err != nil {
			return err
		}
		if _, ok := values[k]; !ok {
			keys = append(keys, k)
		}
		values[k] = append(values[k], v)
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	arn := *user
	if !strings.HasPrefix(arn, "arn:") {
		out, err := client.IAM(cfg).GetUser(ctx, &iam.GetUserInput{UserName: user})
		if err != nil {
			return err
		}
		arn = aws.ToString(out.User.Arn)
	}
	params := url.Values{"Action": {"SimulatePrincipalPolicy"}, "Version": {"2010-05-08"}, "PolicySourceArn": {arn}}
	for i, a := range actions {
		params.Set("ActionNames.member."+strconv.Itoa(i+1), a)
	}
	for i, r := range resources {
		params.Set("ResourceArns.member."+strconv.Itoa(i+1), r)
	}
	for i, k := range keys {
		p := "ContextEntries.member." + strconv.Itoa(i+1)
		params.Set(p+".ContextKeyName", k)
		typ := "string"
		if len(values[k]) > 1 {
			typ = "stringList"
		}
		params.Set(p+".ContextKeyType", typ)
		for j, v := range values[k] {
			params.Set(p+".ContextKeyValues.member."+strconv.Itoa(j+1), v)
		}
	}
	var resp struct {
		Results []simulateResult `xml:"SimulatePrincipalPolicyResult>EvaluationResults>member"`
	}
	// The SDK would drop Postern's statement elements, so this one call is
	// made by hand, signed as the SDK signs IAM.
	if err := client.CallQuery(ctx, cfg, "iam", cfg.Region, params, &resp); err != nil {
		return err
	}
	denied := false
	for _, r := range resp.Results {
		denied = denied || r.EvalDecision != "allowed"
	}
	if fs.json() {
		if err := m.printJSON(map[string]any{"EvaluationResults": nonNil(resp.Results)}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
		for _, r := range resp.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\t(%s)\n", r.EvalDecision, r.EvalActionName, r.EvalResourceName, r.reason())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if denied {
		return exitError{simulateDenied}
	}
	return nil
}

// reason says which statement decided, for example "policy Admin,
// statement Bootstrap" or "group developers policy Read, statement #2".
func (r *simulateResult) reason() string {
	if len(r.MatchedStatements) == 0 {
		return "no statement matched"
	}
	s := r.MatchedStatements[0]
	policy := "policy " + s.SourcePolicyID
	// Group policies are named "group/<group>/<policy>" by the server.
	if rest, ok := strings.CutPrefix(s.SourcePolicyID, "group/"); ok {
		if g, p, ok := strings.Cut(rest, "/"); ok {
			policy = "group " + g + " policy " + p
		}
	}
	if s.StatementSid != "" {
		return policy + ", statement " + s.StatementSid
	}
	return policy + ", statement #" + strconv.Itoa(s.StatementIndex)
}
