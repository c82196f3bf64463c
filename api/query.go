package api

import (
	"sort"
	"strconv"
	"strings"

	"github.com/postern-dev/postern"
)

// maxListItems bounds any Query list parameter.
const maxListItems = 1000

// str returns a Query parameter.
func (c *call) str(name string) string { return c.form.Get(name) }

// required returns a Query parameter that must be present and non-empty.
func (c *call) required(name string) (string, error) {
	v := c.form.Get(name)
	if v == "" {
		return "", postern.CodedErrorf(postern.KindInvalid, c.missingCode(), "The request must contain the parameter %s", name)
	}
	return v, nil
}

func (c *call) missingCode() string {
	if c.svc.proto == protoIAMQuery {
		return "ValidationError"
	}
	return "MissingParameter"
}

// indices returns, sorted, every N for which a parameter prefix.N or
// prefix.N.… is present.
func (c *call) indices(prefix string) ([]int, error) {
	seen := map[int]bool{}
	p := prefix + "."
	for k := range c.form {
		rest, ok := strings.CutPrefix(k, p)
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameter", "The parameter %s is not a valid list member", k)
		}
		seen[n] = true
	}
	if len(seen) > maxListItems {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "The list %s has more than %d members", prefix, maxListItems)
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out, nil
}

// list returns the values of prefix.1, prefix.2, … (EC2 style; for IAM
// pass "Name.member").
func (c *call) list(prefix string) ([]string, error) {
	idx, err := c.indices(prefix)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(idx))
	for _, n := range idx {
		out = append(out, c.form.Get(prefix+"."+strconv.Itoa(n)))
	}
	return out, nil
}

// filters parses Filter.N.Name and Filter.N.Value.M.
func (c *call) filters() ([]postern.Filter, error) {
	idx, err := c.indices("Filter")
	if err != nil {
		return nil, err
	}
	var out []postern.Filter
	for _, n := range idx {
		p := "Filter." + strconv.Itoa(n)
		name := c.form.Get(p + ".Name")
		if name == "" {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "%s.Name is missing", p)
		}
		values, err := c.list(p + ".Value")
		if err != nil {
			return nil, err
		}
		out = append(out, postern.Filter{Name: name, Values: values})
	}
	return out, nil
}

// tags parses prefix.N.Key and prefix.N.Value.
func (c *call) tags(prefix string) ([]postern.Tag, error) {
	idx, err := c.indices(prefix)
	if err != nil {
		return nil, err
	}
	var out []postern.Tag
	for _, n := range idx {
		p := prefix + "." + strconv.Itoa(n)
		out = append(out, postern.Tag{Key: c.form.Get(p + ".Key"), Value: c.form.Get(p + ".Value")})
	}
	return out, nil
}

// tagSpecifications returns the tags of TagSpecification.N entries for
// resourceType; a specification for another type is refused.
func (c *call) tagSpecifications(resourceType string) ([]postern.Tag, error) {
	idx, err := c.indices("TagSpecification")
	if err != nil {
		return nil, err
	}
	var out []postern.Tag
	for _, n := range idx {
		p := "TagSpecification." + strconv.Itoa(n)
		if rt := c.form.Get(p + ".ResourceType"); rt != resourceType {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "%s.ResourceType must be %q here, got %q", p, resourceType, rt)
		}
		t, err := c.tags(p + ".Tag")
		if err != nil {
			return nil, err
		}
		out = append(out, t...)
	}
	return out, nil
}

// tagSelectors parses prefix.N.Key and prefix.N.Value for DeleteTags: a
// Value that is present, even empty, must match; an absent one matches any.
func (c *call) tagSelectors(prefix string) ([]postern.TagSelector, error) {
	idx, err := c.indices(prefix)
	if err != nil {
		return nil, err
	}
	var out []postern.TagSelector
	for _, n := range idx {
		p := prefix + "." + strconv.Itoa(n)
		sel := postern.TagSelector{Key: c.form.Get(p + ".Key")}
		if v, ok := c.form[p+".Value"]; ok && len(v) > 0 {
			sel.Value = &v[0]
		}
		out = append(out, sel)
	}
	return out, nil
}

// optInt returns an integer Query parameter, or nil when it is absent.
func (c *call) optInt(name string) (*int, error) {
	v := c.form.Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%.32s) for parameter %s is invalid. It must be an integer.", v, name)
	}
	return &n, nil
}

// optBool returns a boolean Query parameter, or nil when it is absent.
func (c *call) optBool(name string) (*bool, error) {
	switch v := c.form.Get(name); v {
	case "":
		return nil, nil
	case "true", "false":
		b := v == "true"
		return &b, nil
	default:
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%.32s) for parameter %s is invalid. It must be true or false.", v, name)
	}
}

// ints returns the integers prefix.1, prefix.2, …, or nil when there are
// none.
func (c *call) ints(prefix string) ([]int, error) {
	vs, err := c.list(prefix)
	if err != nil || len(vs) == 0 {
		return nil, err
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		if out[i], err = strconv.Atoi(v); err != nil {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%.32s) for parameter %s.%d is invalid. It must be an integer.", v, prefix, i+1)
		}
	}
	return out, nil
}
