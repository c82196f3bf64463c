package policy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// A Condition is one key under one operator of a statement's Condition
// block, for example StringEquals {"ec2:osuser": ["ec2-user", "ubuntu"]}.
// It holds when the request's values for Key satisfy the operator against
// any of Values (all of them, for the negated operators).
type Condition struct {
	Operator string   // as written, e.g. "ForAnyValue:StringLikeIfExists"
	Key      string   // as written; keys are compared case-insensitively
	Values   []string // as written; numbers and booleans as their JSON text

	op       operator
	set      setOp
	ifExists bool
	key      string // Key in lower case

	strs  []pattern // String*
	arns  []arnPattern
	nums  []float64
	times []time.Time
	bools []bool // Bool, Null
	bins  [][]byte
	nets  []netip.Prefix
}

// family is the kind of value an operator compares.
type family uint8

const (
	famString family = iota
	famNumeric
	famDate
	famBool
	famBinary
	famIP
	famARN
	famNull
)

// cmp is how Numeric* and Date* operators compare a request value (on the
// left) with a policy value.
type cmp uint8

const (
	cmpEq cmp = iota
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

// operator describes a base operator name, without prefix or IfExists.
type operator struct {
	fam     family
	cmp     cmp
	negated bool // the Not forms: true when no policy value matches
	fold    bool // IgnoreCase
	wild    bool // Like: '*' and '?' are wildcards
}

type setOp uint8

const (
	setNone setOp = iota
	setAnyValue
	setAllValues
)

// lookupOperator returns the base operator called name.
func lookupOperator(name string) (operator, bool) {
	switch name {
	case "StringEquals":
		return operator{fam: famString}, true
	case "StringNotEquals":
		return operator{fam: famString, negated: true}, true
	case "StringEqualsIgnoreCase":
		return operator{fam: famString, fold: true}, true
	case "StringNotEqualsIgnoreCase":
		return operator{fam: famString, fold: true, negated: true}, true
	case "StringLike":
		return operator{fam: famString, wild: true}, true
	case "StringNotLike":
		return operator{fam: famString, wild: true, negated: true}, true
	case "NumericEquals":
		return operator{fam: famNumeric}, true
	case "NumericNotEquals":
		return operator{fam: famNumeric, negated: true}, true
	case "NumericLessThan":
		return operator{fam: famNumeric, cmp: cmpLt}, true
	case "NumericLessThanEquals":
		return operator{fam: famNumeric, cmp: cmpLe}, true
	case "NumericGreaterThan":
		return operator{fam: famNumeric, cmp: cmpGt}, true
	case "NumericGreaterThanEquals":
		return operator{fam: famNumeric, cmp: cmpGe}, true
	case "DateEquals":
		return operator{fam: famDate}, true
	case "DateNotEquals":
		return operator{fam: famDate, negated: true}, true
	case "DateLessThan":
		return operator{fam: famDate, cmp: cmpLt}, true
	case "DateLessThanEquals":
		return operator{fam: famDate, cmp: cmpLe}, true
	case "DateGreaterThan":
		return operator{fam: famDate, cmp: cmpGt}, true
	case "DateGreaterThanEquals":
		return operator{fam: famDate, cmp: cmpGe}, true
	case "Bool":
		return operator{fam: famBool}, true
	case "BinaryEquals":
		return operator{fam: famBinary}, true
	case "IpAddress":
		return operator{fam: famIP}, true
	case "NotIpAddress":
		return operator{fam: famIP, negated: true}, true
	case "ArnEquals", "ArnLike":
		return operator{fam: famARN}, true
	case "ArnNotEquals", "ArnNotLike":
		return operator{fam: famARN, negated: true}, true
	case "Null":
		return operator{fam: famNull}, true
	}
	return operator{}, false
}

// parseOperator splits a Condition block's operator name into its set
// prefix, base operator and IfExists suffix. When the name is not valid,
// ok is false and hint, if not empty, says why.
func parseOperator(name string) (op operator, set setOp, ifExists bool, hint string, ok bool) {
	base := name
	if rest, found := strings.CutPrefix(base, "ForAnyValue:"); found {
		base, set = rest, setAnyValue
	} else if rest, found := strings.CutPrefix(base, "ForAllValues:"); found {
		base, set = rest, setAllValues
	}
	if rest, found := strings.CutSuffix(base, "IfExists"); found {
		if rest == "Null" {
			return op, set, false, "Null takes no IfExists suffix", false
		}
		base, ifExists = rest, true
	}
	if op, ok = lookupOperator(base); !ok {
		for _, known := range operatorNames {
			if strings.EqualFold(base, known) {
				return op, set, ifExists, "operator names are case-sensitive: " + strconv.Quote(known), false
			}
		}
		return op, set, ifExists, "", false
	}
	if op.fam == famNull && set != setNone {
		return op, set, ifExists, "Null takes no ForAnyValue: or ForAllValues: prefix", false
	}
	return op, set, ifExists, "", true
}

// operatorNames lists the base operators, for hints.
var operatorNames = [...]string{
	"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
	"StringLike", "StringNotLike",
	"NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
	"NumericGreaterThan", "NumericGreaterThanEquals",
	"DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
	"DateGreaterThan", "DateGreaterThanEquals",
	"Bool", "BinaryEquals", "IpAddress", "NotIpAddress",
	"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
}

// compileValue checks and stores one policy value of the condition. vars
// says whether policy variables are on (Version 2012-10-17). The message
// of a returned error follows the value's path.
func (c *Condition) compileValue(v string, vars bool) error {
	switch c.op.fam {
	case famString:
		p, err := newPattern(v, c.op.wild, vars, c.op.fold)
		if err != nil {
			return err
		}
		c.strs = append(c.strs, p)
	case famARN:
		a, err := newARNPattern(v, vars)
		if err != nil {
			return err
		}
		c.arns = append(c.arns, a)
	case famNumeric:
		f, ok := parseNumber(v)
		if !ok {
			return errors.New(strconv.Quote(v) + " is not a number")
		}
		c.nums = append(c.nums, f)
	case famDate:
		t, ok := parseDate(v)
		if !ok {
			return errors.New(strconv.Quote(v) + " is not a date (ISO 8601, such as 2026-01-31T12:00:00Z, or epoch seconds)")
		}
		c.times = append(c.times, t)
	case famBool, famNull:
		b, ok := parseBool(v)
		if !ok {
			return errors.New(`must be "true" or "false", got ` + strconv.Quote(v))
		}
		c.bools = append(c.bools, b)
	case famBinary:
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return errors.New(strconv.Quote(v) + " is not base64")
		}
		c.bins = append(c.bins, b)
	case famIP:
		p, ok := parsePrefix(v)
		if !ok {
			return errors.New(strconv.Quote(v) + " is not an IP address or CIDR block")
		}
		c.nets = append(c.nets, p)
	}
	c.Values = append(c.Values, v)
	return nil
}

// holds reports whether the condition holds for the request's keys.
//
// An absent key (or one with no values) satisfies IfExists and
// ForAllValues, fails ForAnyValue, and otherwise satisfies only the
// negated operators, as IAM documents. A present key is tested value by
// value: a value matches when it satisfies the operator's positive form
// against any policy value. Without a prefix, a positive operator needs
// one matching value and a negated operator needs every value to miss;
// ForAnyValue needs one value to pass the operator, ForAllValues all of
// them. A request value that does not parse (a number, date, address,
// boolean or ARN) passes neither form: a bad value never satisfies a
// condition.
func (c *Condition) holds(kv keys) bool {
	vals := kv[c.key]
	if c.op.fam == famNull {
		absent := len(vals) == 0
		for _, b := range c.bools {
			if b == absent {
				return true
			}
		}
		return false
	}
	if len(vals) == 0 {
		switch {
		case c.ifExists || c.set == setAllValues:
			return true
		case c.set == setAnyValue:
			return false
		}
		return c.op.negated
	}
	// pass reports whether one request value passes the operator.
	pass := func(v string) bool {
		matched, ok := c.matchValue(v, kv)
		return ok && matched != c.op.negated
	}
	all := c.set == setAllValues || c.set == setNone && c.op.negated
	for _, v := range vals {
		if p := pass(v); p != all {
			return p // the first passing value for "any", the first failing one for "all"
		}
	}
	return all
}

// matchValue reports whether the request value v matches any policy value
// under the positive form of the operator; ok is false when v does not
// parse as the operator's kind of value.
func (c *Condition) matchValue(v string, kv keys) (matched, ok bool) {
	switch c.op.fam {
	case famString:
		for i := range c.strs {
			if c.strs[i].match(v, kv) {
				return true, true
			}
		}
		return false, true
	case famARN:
		if !isARN(v) {
			return false, false
		}
		for i := range c.arns {
			if c.arns[i].match(v, kv) {
				return true, true
			}
		}
		return false, true
	case famNumeric:
		f, ok := parseNumber(v)
		if !ok {
			return false, false
		}
		for _, n := range c.nums {
			if compare(c.op.cmp, cmpFloat(f, n)) {
				return true, true
			}
		}
		return false, true
	case famDate:
		t, ok := parseDate(v)
		if !ok {
			return false, false
		}
		for _, pt := range c.times {
			if compare(c.op.cmp, t.Compare(pt)) {
				return true, true
			}
		}
		return false, true
	case famBool:
		b, ok := parseBool(v)
		if !ok {
			return false, false
		}
		for _, pb := range c.bools {
			if b == pb {
				return true, true
			}
		}
		return false, true
	case famBinary:
		var buf [64]byte
		dst := buf[:]
		if n := base64.StdEncoding.DecodedLen(len(v)); n > len(dst) {
			dst = make([]byte, n)
		}
		n, err := base64.StdEncoding.Decode(dst, []byte(v))
		if err != nil {
			return false, false
		}
		for _, b := range c.bins {
			if bytes.Equal(dst[:n], b) {
				return true, true
			}
		}
		return false, true
	case famIP:
		a, err := netip.ParseAddr(v)
		if err != nil {
			return false, false
		}
		a = a.Unmap().WithZone("")
		for _, p := range c.nets {
			if p.Contains(a) {
				return true, true
			}
		}
		return false, true
	}
	return false, false
}

// isARN reports whether s has the shape of an ARN: "arn:" and at least
// six colon-separated components.
func isARN(s string) bool {
	return strings.HasPrefix(s, "arn:") && strings.Count(s, ":") >= 5
}

func compare(c cmp, r int) bool {
	switch c {
	case cmpLt:
		return r < 0
	case cmpLe:
		return r <= 0
	case cmpGt:
		return r > 0
	case cmpGe:
		return r >= 0
	}
	return r == 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseNumber parses an integer or decimal number; NaN and infinities are
// not numbers here.
func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "xXpP_") { // no hex floats or digit separators
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// dateLayouts are the ISO 8601 forms Date* operators accept. A time
// without a zone is UTC.
var dateLayouts = [...]string{
	time.RFC3339Nano,
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseDate parses an ISO 8601 date or date-time, or a count of seconds
// since 1970-01-01T00:00:00Z (possibly with a fraction).
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if isEpoch(s) {
		sec, frac, _ := strings.Cut(s, ".")
		n, err := strconv.ParseInt(sec, 10, 64)
		if err != nil || n > 1<<40 || n < -(1<<40) {
			return time.Time{}, false
		}
		var ns int64
		if frac != "" {
			frac = (frac + "000000000")[:9]
			ns, _ = strconv.ParseInt(frac, 10, 64)
			if strings.HasPrefix(sec, "-") {
				ns = -ns
			}
		}
		return time.Unix(n, ns).UTC(), true
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// isEpoch reports whether s looks like epoch seconds: digits, an optional
// leading '-' and an optional fraction.
func isEpoch(s string) bool {
	s = strings.TrimPrefix(s, "-")
	sec, frac, hasFrac := strings.Cut(s, ".")
	if sec == "" || hasFrac && frac == "" {
		return false
	}
	for _, part := range [2]string{sec, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

func parseBool(s string) (bool, bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

// parsePrefix parses a CIDR block or a single address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}
