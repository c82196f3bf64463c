package policy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-dev/postern"
)

// MaxSize is the largest policy document Parse accepts, in bytes.
const MaxSize = 10240

// Policy language versions. Version2012 turns on policy variables; in
// Version2008 (and when Version is absent) "${...}" is literal text.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// ErrorCode is the AWS error code of every error Parse returns.
const ErrorCode = "MalformedPolicyDocument"

// A Document is a parsed IAM identity policy. The exported fields
// describe the document as written; Evaluate uses a form compiled by
// Parse, so changing them has no effect. A Document is safe for
// concurrent use.
type Document struct {
	Version    string // "2012-10-17", "2008-10-17", or empty when absent
	ID         string // the optional Id element
	Statements []Statement
}

// A Statement is one element of a policy's Statement array.
type Statement struct {
	Sid         string   // optional; unique within the document when set
	Effect      string   // "Allow" or "Deny"
	Action      []string // exactly one of Action and NotAction is set
	NotAction   []string
	Resource    []string // exactly one of Resource and NotResource is set
	NotResource []string
	Conditions  []Condition // all must hold; ordered by operator, then key

	deny      bool
	actions   []pattern // of Action or NotAction
	notAction bool
	resources []pattern // of Resource or NotResource
	notRes    bool
}

// Parse reads and checks an IAM identity policy. Its errors are
// *postern.Error values of kind KindInvalid and code
// MalformedPolicyDocument whose message names the offending element by its
// path, for example `Statement[1].Effect: must be "Allow" or "Deny", got
// "Alow"`.
func Parse(doc []byte) (*Document, error) {
	if len(doc) > MaxSize {
		return nil, malformed("policy document is %d bytes, more than the limit of %d", len(doc), MaxSize)
	}
	root, err := readJSON(doc)
	if err != nil {
		return nil, err
	}
	if root.kind != kindObject {
		return nil, malformed("policy document must be a JSON object, got %s", root.kind)
	}
	if err := checkFields(root, "", "Version", "Id", "Statement"); err != nil {
		return nil, err
	}
	d := &Document{}
	var stmts *node
	for i := range root.fields {
		f := &root.fields[i]
		switch f.name {
		case "Version":
			if f.val.kind != kindString {
				return nil, malformed("Version: must be a string, got %s", f.val.kind)
			}
			if f.val.text != Version2012 && f.val.text != Version2008 {
				return nil, malformed("Version: unsupported %q (use %q)", f.val.text, Version2012)
			}
			d.Version = f.val.text
		case "Id":
			if f.val.kind != kindString {
				return nil, malformed("Id: must be a string, got %s", f.val.kind)
			}
			d.ID = f.val.text
		case "Statement":
			stmts = &f.val
		}
	}
	if stmts == nil {
		return nil, malformed("Statement: missing")
	}
	list := []node{*stmts}
	if stmts.kind == kindArray {
		list = stmts.items
		if len(list) == 0 {
			return nil, malformed("Statement: empty")
		}
	}
	vars := d.Version == Version2012
	sids := map[string]int{}
	for i := range list {
		path := "Statement[" + strconv.Itoa(i) + "]"
		s, err := parseStatement(&list[i], path, vars)
		if err != nil {
			return nil, err
		}
		if s.Sid != "" {
			if j, dup := sids[s.Sid]; dup {
				return nil, malformed("%s.Sid: duplicate %q (also Statement[%d])", path, s.Sid, j)
			}
			sids[s.Sid] = i
		}
		d.Statements = append(d.Statements, s)
	}
	return d, nil
}

func parseStatement(n *node, path string, vars bool) (Statement, error) {
	var s Statement
	if n.kind != kindObject {
		return s, malformed("%s: must be an object, got %s", path, n.kind)
	}
	if err := checkFields(*n, path, "Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"); err != nil {
		return s, err
	}
	get := func(name string) *node {
		for i := range n.fields {
			if n.fields[i].name == name {
				return &n.fields[i].val
			}
		}
		return nil
	}

	if v := get("Sid"); v != nil {
		if v.kind != kindString {
			return s, malformed("%s.Sid: must be a string, got %s", path, v.kind)
		}
		for _, c := range v.text {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return s, malformed("%s.Sid: %q must contain only letters and digits", path, v.text)
			}
		}
		s.Sid = v.text
	}

	switch v := get("Effect"); {
	case v == nil:
		return s, malformed("%s.Effect: missing", path)
	case v.kind != kindString:
		return s, malformed("%s.Effect: must be \"Allow\" or \"Deny\", got %s", path, v.kind)
	case v.text != "Allow" && v.text != "Deny":
		return s, malformed("%s.Effect: must be \"Allow\" or \"Deny\", got %q", path, v.text)
	default:
		s.Effect, s.deny = v.text, v.text == "Deny"
	}

	action, notAction := get("Action"), get("NotAction")
	switch {
	case action != nil && notAction != nil:
		return s, malformed("%s: Action and NotAction are both set", path)
	case action == nil && notAction == nil:
		return s, malformed("%s.Action: missing", path)
	}
	name, v := "Action", action
	if notAction != nil {
		name, v, s.notAction = "NotAction", notAction, true
	}
	list, err := stringList(v, path+"."+name)
	if err != nil {
		return s, err
	}
	for i, a := range list {
		if a != "*" {
			if svc, act, ok := strings.Cut(a, ":"); !ok || svc == "" || act == "" {
				return s, malformed("%s: %q is not \"service:action\" or \"*\"", elemPath(path+"."+name, v, i), a)
			}
		}
		p, _ := newPattern(a, true, false, true) // without variables, cannot fail
		s.actions = append(s.actions, p)
	}
	if s.notAction {
		s.NotAction = list
	} else {
		s.Action = list
	}

	resource, notResource := get("Resource"), get("NotResource")
	switch {
	case resource != nil && notResource != nil:
		return s, malformed("%s: Resource and NotResource are both set", path)
	case resource == nil && notResource == nil:
		return s, malformed("%s.Resource: missing", path)
	}
	name, v = "Resource", resource
	if notResource != nil {
		name, v, s.notRes = "NotResource", notResource, true
	}
	if list, err = stringList(v, path+"."+name); err != nil {
		return s, err
	}
	for i, r := range list {
		if r != "*" && !strings.HasPrefix(r, "arn:") {
			return s, malformed("%s: %q is not an ARN or \"*\"", elemPath(path+"."+name, v, i), r)
		}
		p, err := newPattern(r, true, vars, false)
		if err != nil {
			return s, malformed("%s: %v", elemPath(path+"."+name, v, i), err)
		}
		s.resources = append(s.resources, p)
	}
	if s.notRes {
		s.NotResource = list
	} else {
		s.Resource = list
	}

	if v := get("Condition"); v != nil {
		if s.Conditions, err = parseConditions(v, path+".Condition", vars); err != nil {
			return s, err
		}
	}
	return s, nil
}

// parseConditions reads a Condition block: operator → key → value(s).
func parseConditions(n *node, path string, vars bool) ([]Condition, error) {
	if n.kind != kindObject {
		return nil, malformed("%s: must be an object, got %s", path, n.kind)
	}
	if err := checkFields(*n, path); err != nil {
		return nil, err
	}
	var conds []Condition
	for _, f := range sortedFields(n.fields) {
		op, set, ifExists, hint, ok := parseOperator(f.name)
		if !ok {
			if hint != "" {
				hint = " (" + hint + ")"
			}
			return nil, malformed("%s: unknown operator %q%s", path, f.name, hint)
		}
		opPath := path + "." + f.name
		if f.val.kind != kindObject {
			return nil, malformed("%s: must be an object of condition keys, got %s", opPath, f.val.kind)
		}
		if err := checkFields(f.val, opPath); err != nil {
			return nil, err
		}
		for _, k := range sortedFields(f.val.fields) {
			keyPath := opPath + "." + k.name
			if strings.TrimSpace(k.name) == "" {
				return nil, malformed("%s: empty condition key", opPath)
			}
			c := Condition{Operator: f.name, Key: k.name, op: op, set: set, ifExists: ifExists, key: strings.ToLower(k.name)}
			items := []node{k.val}
			if k.val.kind == kindArray {
				items = k.val.items
				if len(items) == 0 {
					return nil, malformed("%s: empty", keyPath)
				}
			}
			for i := range items {
				it := &items[i]
				vp := elemPath(keyPath, &k.val, i)
				if it.kind != kindString && it.kind != kindNumber && it.kind != kindBool {
					return nil, malformed("%s: must be a string, number or boolean, got %s", vp, it.kind)
				}
				if err := c.compileValue(it.text, vars); err != nil {
					return nil, malformed("%s: %v", vp, err)
				}
			}
			conds = append(conds, c)
		}
	}
	return conds, nil
}

// stringList reads an element that is a string or a non-empty array of
// strings.
func stringList(n *node, path string) ([]string, error) {
	switch n.kind {
	case kindString:
		return []string{n.text}, nil
	case kindArray:
		if len(n.items) == 0 {
			return nil, malformed("%s: empty", path)
		}
		list := make([]string, len(n.items))
		for i, it := range n.items {
			if it.kind != kindString {
				return nil, malformed("%s[%d]: must be a string, got %s", path, i, it.kind)
			}
			list[i] = it.text
		}
		return list, nil
	}
	return nil, malformed("%s: must be a string or an array of strings, got %s", path, n.kind)
}

// elemPath names the i-th value of an element that may be a single value
// (then the element's own path) or an array.
func elemPath(path string, n *node, i int) string {
	if n.kind == kindArray {
		return path + "[" + strconv.Itoa(i) + "]"
	}
	return path
}

// checkFields rejects duplicate members of an object and, when known is
// not empty, members not in known.
func checkFields(n node, path string, known ...string) error {
	prefix := ""
	if path != "" {
		prefix = path + ": "
	}
	for i, f := range n.fields {
		for _, g := range n.fields[:i] {
			if g.name == f.name {
				return malformed("%sduplicate field %q", prefix, f.name)
			}
		}
		if len(known) == 0 || slices.Contains(known, f.name) {
			continue
		}
		if path != "" && (f.name == "Principal" || f.name == "NotPrincipal") {
			return malformed("%s.%s: not allowed in an identity policy", path, f.name)
		}
		for _, k := range known {
			if strings.EqualFold(k, f.name) {
				return malformed("%sunknown field %q (field names are case-sensitive: %q)", prefix, f.name, k)
			}
		}
		return malformed("%sunknown field %q", prefix, f.name)
	}
	return nil
}

// sortedFields returns the members of an object ordered by name, so that
// conditions and the first error reported do not depend on how the
// document was written.
func sortedFields(fs []field) []field {
	out := slices.Clone(fs)
	slices.SortStableFunc(out, func(a, b field) int { return strings.Compare(a.name, b.name) })
	return out
}

// malformed returns a MalformedPolicyDocument error.
func malformed(format string, args ...any) error {
	return &postern.Error{Kind: postern.KindInvalid, Code: ErrorCode, Message: fmt.Sprintf(format, args...)}
}

func isMalformed(err error) bool {
	var e *postern.Error
	return errors.As(err, &e) && e.Code == ErrorCode
}
