package authority

import (
	"context"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/policy"
)

// Access is one thing a caller wants to do.
type Access struct {
	Action   string              // "ec2:DescribeVpcs"
	Resource string              // an ARN or "*"
	Context  map[string][]string // request-specific condition keys
}

// Env describes the request around an Access: where it came from and when.
type Env struct {
	SourceIP  netip.Addr
	UserAgent string
	Time      time.Time
	MFA       bool // signed in with a second factor (console sessions)
}

// Authorize evaluates the caller's policies (their own inline policies and
// their groups') for acc. It returns the decision and, unless the decision
// is Allow, a KindDenied error in AWS's words.
func (a *Authority) Authorize(ctx context.Context, p *Principal, acc Access, env Env) (policy.Decision, error) {
	env.MFA = env.MFA || p.MFA
	d, err := a.decide(ctx, p.User, acc, env)
	if err != nil {
		return d, err
	}
	if d.Effect == policy.Allow {
		return d, nil
	}
	why := "because no identity-based policy allows the " + acc.Action + " action"
	if d.Effect == policy.ExplicitDeny {
		why = "with an explicit deny in an identity-based policy"
	}
	return d, postern.Errorf(postern.KindDenied, "User: %s is not authorized to perform: %s on resource: %s %s",
		a.UserARN(p.User.Name), acc.Action, acc.Resource, why)
}

// Simulate evaluates acc for the named user as Authorize would, without
// failing on a deny: the answer of `postern policy simulate`.
func (a *Authority) Simulate(ctx context.Context, userName string, acc Access, env Env) (policy.Decision, error) {
	u, err := a.store.GetUser(ctx, userName)
	if err != nil {
		return policy.Decision{}, err
	}
	return a.decide(ctx, *u, acc, env)
}

func (a *Authority) decide(ctx context.Context, u postern.User, acc Access, env Env) (policy.Decision, error) {
	_, docs, err := a.identityOf(ctx, u.Name)
	if err != nil {
		return policy.Decision{}, err
	}
	return policy.Evaluate(docs, policy.Request{
		Action:   acc.Action,
		Resource: acc.Resource,
		Context:  a.requestContext(u, acc, env),
	}), nil
}

// requestContext fills the global condition keys AWS defines for an IAM
// user's request; acc.Context adds or overrides service-specific keys.
func (a *Authority) requestContext(u postern.User, acc Access, env Env) map[string][]string {
	t := env.Time
	if t.IsZero() {
		t = a.now()
	}
	c := map[string][]string{
		"aws:username":               {u.Name},
		"aws:userid":                 {u.ID},
		"aws:principalarn":           {a.UserARN(u.Name)},
		"aws:principalaccount":       {a.cfg.Account},
		"aws:principaltype":          {"User"},
		"aws:currenttime":            {t.UTC().Format(time.RFC3339)},
		"aws:epochtime":              {strconv.FormatInt(t.Unix(), 10)},
		"aws:securetransport":        {"true"},
		"aws:requestedregion":        {a.cfg.Region},
		"aws:multifactorauthpresent": {strconv.FormatBool(env.MFA)},
	}
	if !env.MFA {
		// Long-term access keys carry no MFA context at all, as in AWS.
		delete(c, "aws:multifactorauthpresent")
	}
	if env.SourceIP.IsValid() {
		c["aws:sourceip"] = []string{env.SourceIP.Unmap().String()}
	}
	if env.UserAgent != "" {
		c["aws:useragent"] = []string{env.UserAgent}
	}
	// Condition key names are case-insensitive but tag keys are not: the
	// values of aws:RequestTag/env and aws:RequestTag/Env both count
	// under the one name, so that a Deny on either cannot be skipped. A
	// key of the call's own replaces the global one of that name.
	extra := make(map[string][]string, len(acc.Context))
	for k, v := range acc.Context {
		lk := strings.ToLower(k)
		extra[lk] = append(extra[lk], v...)
	}
	maps.Copy(c, extra)
	return c
}

// parsed returns the parsed form of a stored policy document, cached by its
// text: the same few documents are evaluated on every request.
func (a *Authority) parsed(doc string) (*policy.Document, error) {
	a.mu.Lock()
	d, ok := a.policies[doc]
	a.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.policies) > 4096 {
		clear(a.policies)
	}
	a.policies[doc] = d
	a.mu.Unlock()
	return d, nil
}

// ResourceTagContext returns the aws:ResourceTag/<key> condition keys for
// a resource's tags.
func ResourceTagContext(tags []postern.Tag) map[string][]string {
	c := make(map[string][]string, len(tags))
	for _, t := range tags {
		c["aws:ResourceTag/"+t.Key] = []string{t.Value}
	}
	return c
}
