package policy

import (
	"fmt"
	"strings"
)

// A Request is what a caller asks to do, as Evaluate sees it.
type Request struct {
	Action   string // "ec2-instance-connect:SendSSHPublicKey"; matched case-insensitively
	Resource string // an ARN, or "*" for actions without a resource; matched case-sensitively

	// Context holds the condition keys ("aws:username", "ec2:osuser",
	// "aws:ResourceTag/env", "aws:SourceIp", "aws:CurrentTime", ...).
	// Key names are case-insensitive; Evaluate is fastest when they are
	// already lower case. A multi-valued key has several values; a key
	// with no values is absent.
	Context map[string][]string
}

// A NamedDocument is a parsed policy and the name decisions report it by.
type NamedDocument struct {
	Name string
	Doc  *Document
}

// Effect is the outcome of an evaluation.
type Effect int

// The outcomes, in IAM's terms. The zero Effect is ImplicitDeny.
const (
	ImplicitDeny Effect = iota // no statement allows the request
	Allow                      // a statement allows it and none denies it
	ExplicitDeny               // a statement denies it
)

// String returns the IAM policy simulator's word for e.
func (e Effect) String() string {
	switch e {
	case ImplicitDeny:
		return "implicitDeny"
	case Allow:
		return "allowed"
	case ExplicitDeny:
		return "explicitDeny"
	}
	return fmt.Sprintf("Effect(%d)", int(e))
}

// A Decision is the result of Evaluate and the statement that decided it.
type Decision struct {
	Effect Effect

	// For Allow and ExplicitDeny, the deciding statement: its policy's
	// name, its Sid (empty when it has none) and its index in the
	// policy's Statement array, counted from 0 as in Parse's error
	// paths. For ImplicitDeny they are zero.
	PolicyName     string
	Sid            string
	StatementIndex int
}

// String describes d, for example
// `explicitDeny by policy "deny-root" statement "NoRoot" (#1)`.
func (d Decision) String() string {
	if d.Effect == ImplicitDeny {
		return "implicitDeny: no statement allows the request"
	}
	if d.Sid == "" {
		return fmt.Sprintf("%s by policy %q statement #%d", d.Effect, d.PolicyName, d.StatementIndex)
	}
	return fmt.Sprintf("%s by policy %q statement %q (#%d)", d.Effect, d.PolicyName, d.Sid, d.StatementIndex)
}

// Evaluate decides req against a principal's identity policies, as IAM
// does within one account: a statement that applies with Effect Deny
// decides ExplicitDeny, whatever the order of the statements; otherwise a
// statement that applies with Effect Allow decides Allow; otherwise the
// request is implicitly denied. The decision names the first deciding
// statement in input order (policies in order, then statements). Nil
// documents are skipped.
//
// A statement applies when the action matches Action (or matches none of
// NotAction), the resource matches Resource (or none of NotResource), and
// every condition holds.
func Evaluate(policies []NamedDocument, req Request) Decision {
	kv := lowerKeys(req.Context)
	var allow Decision
	for _, nd := range policies {
		if nd.Doc == nil {
			continue
		}
		for i := range nd.Doc.Statements {
			s := &nd.Doc.Statements[i]
			if !s.deny && allow.Effect == Allow {
				continue // an earlier statement allows already; only a deny can change that
			}
			if !s.applies(&req, kv) {
				continue
			}
			d := Decision{Effect: Allow, PolicyName: nd.Name, Sid: s.Sid, StatementIndex: i}
			if s.deny {
				d.Effect = ExplicitDeny
				return d
			}
			allow = d
		}
	}
	return allow
}

// applies reports whether the statement covers the request.
func (s *Statement) applies(req *Request, kv keys) bool {
	if matchAny(s.actions, req.Action, kv) == s.notAction {
		return false
	}
	if matchAny(s.resources, req.Resource, kv) == s.notRes {
		return false
	}
	for i := range s.Conditions {
		if !s.Conditions[i].holds(kv) {
			return false
		}
	}
	return true
}

func matchAny(ps []pattern, s string, kv keys) bool {
	for i := range ps {
		if ps[i].match(s, kv) {
			return true
		}
	}
	return false
}

// lowerKeys returns ctx keyed by lower-case names. When the keys are lower
// case already, as the authority supplies them, it returns ctx itself and
// allocates nothing. Keys that differ only in case are merged.
func lowerKeys(ctx map[string][]string) keys {
	lower := true
	for k := range ctx {
		if !isLower(k) {
			lower = false
			break
		}
	}
	if lower {
		return keys(ctx)
	}
	kv := make(keys, len(ctx))
	for k, v := range ctx {
		lk := strings.ToLower(k)
		kv[lk] = append(kv[lk], v...)
	}
	return kv
}

// isLower reports whether strings.ToLower(s) == s, conservatively: any
// byte outside ASCII counts as possibly upper case.
func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' || c >= 0x80 {
			return false
		}
	}
	return true
}
