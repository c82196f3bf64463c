package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// A pattern is a compiled Action, Resource or condition value: literal
// text, the wildcards '*' (any run of characters, including none) and '?'
// (exactly one character), and policy variables such as ${aws:username}.
// Wildcards may span ':' and '/'. Text substituted for a variable is
// always literal, so a '*' in a user's name never acts as a wildcard.
//
// The pattern is kept split at its stars. The first segment must match at
// the start of the text and the last at its end; each segment between two
// stars matches a run of a fixed number of characters once its variables
// are resolved, so placing every middle segment at its leftmost match is
// optimal and matching needs no backtracking: it takes time proportional
// to the length of the text times that of the longest middle segment.
type pattern struct {
	segs  [][]token // at least one; segment i+1 follows the i-th star
	nvars int       // tokVar tokens, numbered 0..nvars-1 by token.idx
	fold  bool      // compare literal text case-insensitively
}

type token struct {
	kind       tokKind
	text       string // tokLit: the text; tokVar: the default value
	key        string // tokVar: the context key, lower case
	hasDefault bool   // tokVar: text is a default for an absent key
	idx        int    // tokVar: index into the resolved values
}

type tokKind uint8

const (
	tokLit  tokKind = iota
	tokAny1         // '?'
	tokStar         // '*'
	tokVar          // ${key} or ${key, 'default'}
)

// tokenize splits s into tokens. With wild, '*' and '?' are wildcards;
// without it they are literal. With vars, "${...}" is a policy variable
// (or one of the escapes ${*}, ${?}, ${$}); without it, literal text.
func tokenize(s string, wild, vars bool) ([]token, error) {
	var toks []token
	lit := func(t string) {
		if n := len(toks); n > 0 && toks[n-1].kind == tokLit {
			toks[n-1].text += t
			return
		}
		toks = append(toks, token{kind: tokLit, text: t})
	}
	special := func(c byte) bool {
		return wild && (c == '*' || c == '?') || vars && c == '$'
	}
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case wild && c == '*':
			if n := len(toks); n == 0 || toks[n-1].kind != tokStar { // "**" is "*"
				toks = append(toks, token{kind: tokStar})
			}
			i++
		case wild && c == '?':
			toks = append(toks, token{kind: tokAny1})
			i++
		case vars && strings.HasPrefix(s[i:], "${"):
			t, n, err := parseVariable(s[i:])
			if err != nil {
				return nil, err
			}
			if t.kind == tokLit {
				lit(t.text)
			} else {
				toks = append(toks, t)
			}
			i += n
		default:
			j := i + 1
			for j < len(s) && !special(s[j]) {
				j++
			}
			lit(s[i:j])
			i = j
		}
	}
	return toks, nil
}

// parseVariable reads the policy variable at the start of s, which begins
// with "${", and returns it and the number of bytes it spans. Spaces
// around the key and around the quoted default are ignored; within the
// default, two single quotes stand for one.
func parseVariable(s string) (token, int, error) {
	body := s[2:]
	end := strings.IndexAny(body, ",}")
	if end < 0 {
		return token{}, 0, fmt.Errorf("policy variable %q is missing its closing '}'", s)
	}
	key := strings.TrimSpace(body[:end])
	if body[end] == '}' {
		switch key {
		case "*", "?", "$":
			return token{kind: tokLit, text: key}, 2 + end + 1, nil
		}
	}
	if key == "" || strings.ContainsAny(key, " \t\r\n${}'*?") {
		return token{}, 0, fmt.Errorf("policy variable %q has an invalid key %q", s[:min(len(s), 2+end+1)], key)
	}
	t := token{kind: tokVar, key: strings.ToLower(key)}
	if body[end] == '}' {
		return t, 2 + end + 1, nil
	}
	// ${key, 'default'}
	rest := body[end+1:]
	i := len(rest) - len(strings.TrimLeft(rest, " "))
	if i == len(rest) || rest[i] != '\'' {
		return token{}, 0, fmt.Errorf("policy variable %q: the default must be in single quotes", s)
	}
	var def strings.Builder
	for i++; ; i++ {
		if i >= len(rest) {
			return token{}, 0, fmt.Errorf("policy variable %q: the default is missing its closing quote", s)
		}
		if rest[i] == '\'' {
			if i+1 < len(rest) && rest[i+1] == '\'' {
				def.WriteByte('\'')
				i++
				continue
			}
			break
		}
		def.WriteByte(rest[i])
	}
	i++
	for i < len(rest) && rest[i] == ' ' {
		i++
	}
	if i >= len(rest) || rest[i] != '}' {
		return token{}, 0, fmt.Errorf("policy variable %q is missing its closing '}'", s)
	}
	t.text, t.hasDefault = def.String(), true
	return t, 2 + end + 1 + i + 1, nil
}

// compile turns tokens into a pattern.
func compile(toks []token, fold bool) pattern {
	p := pattern{fold: fold, segs: [][]token{nil}}
	for _, t := range toks {
		if t.kind == tokStar {
			p.segs = append(p.segs, nil)
			continue
		}
		if t.kind == tokVar {
			t.idx = p.nvars
			p.nvars++
		}
		last := len(p.segs) - 1
		p.segs[last] = append(p.segs[last], t)
	}
	return p
}

// newPattern tokenizes and compiles s.
func newPattern(s string, wild, vars, fold bool) (pattern, error) {
	toks, err := tokenize(s, wild, vars)
	if err != nil {
		return pattern{}, err
	}
	return compile(toks, fold), nil
}

// hasWildcard reports whether the pattern has a '*' or a '?'.
func (p *pattern) hasWildcard() bool {
	if len(p.segs) > 1 {
		return true
	}
	for _, t := range p.segs[0] {
		if t.kind == tokAny1 {
			return true
		}
	}
	return false
}

// keys holds a request's condition keys by lower-case name.
type keys map[string][]string

// resolve returns the text a variable stands for: the key's value, or the
// default when the key is absent or has several values. Without a default
// it fails, and the pattern holding the variable matches nothing.
func (k keys) resolve(t *token) (string, bool) {
	if v := k[t.key]; len(v) == 1 {
		return v[0], true
	}
	if t.hasDefault {
		return t.text, true
	}
	return "", false
}

// match reports whether s matches the pattern, resolving variables in kv.
func (p *pattern) match(s string, kv keys) bool {
	var buf [4]string
	vals := buf[:0]
	if p.nvars > len(buf) {
		vals = make([]string, 0, p.nvars)
	}
	if p.nvars > 0 {
		for _, seg := range p.segs {
			for i := range seg {
				if seg[i].kind == tokVar {
					v, ok := kv.resolve(&seg[i])
					if !ok {
						return false
					}
					vals = append(vals, v)
				}
			}
		}
	}

	segs := p.segs
	end, ok := p.matchAt(segs[0], s, 0, vals)
	if !ok {
		return false
	}
	if len(segs) == 1 {
		return end == len(s)
	}
	pos := end
	for _, seg := range segs[1 : len(segs)-1] {
		if pos, ok = p.find(seg, s, pos, vals); !ok {
			return false
		}
	}
	start, ok := p.matchBack(segs[len(segs)-1], s, vals)
	return ok && start >= pos
}

// find places seg at its leftmost match in s at or after pos and returns
// where the match ends.
func (p *pattern) find(seg []token, s string, pos int, vals []string) (int, bool) {
	var first string
	quick := false
	if len(seg) > 0 && !p.fold {
		switch seg[0].kind {
		case tokLit:
			first, quick = seg[0].text, true
		case tokVar:
			first, quick = vals[seg[0].idx], true
		}
	}
	for j := pos; j <= len(s); j++ {
		if quick {
			k := strings.Index(s[j:], first)
			if k < 0 {
				return 0, false
			}
			j += k
		} else if j < len(s) && !utf8.RuneStart(s[j]) {
			continue
		}
		if end, ok := p.matchAt(seg, s, j, vals); ok {
			return end, true
		}
	}
	return 0, false
}

// matchAt matches seg against s starting at i and returns where it ends.
func (p *pattern) matchAt(seg []token, s string, i int, vals []string) (int, bool) {
	for _, t := range seg {
		if t.kind == tokAny1 {
			if i >= len(s) {
				return 0, false
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
			continue
		}
		text := t.text
		if t.kind == tokVar {
			text = vals[t.idx]
		}
		if len(s)-i < len(text) {
			return 0, false
		}
		if p.fold {
			if !strings.EqualFold(s[i:i+len(text)], text) {
				return 0, false
			}
		} else if s[i:i+len(text)] != text {
			return 0, false
		}
		i += len(text)
	}
	return i, true
}

// matchBack matches seg against the end of s and returns where the
// match starts.
func (p *pattern) matchBack(seg []token, s string, vals []string) (int, bool) {
	i := len(s)
	for k := len(seg) - 1; k >= 0; k-- {
		t := &seg[k]
		if t.kind == tokAny1 {
			if i == 0 {
				return 0, false
			}
			_, n := utf8.DecodeLastRuneInString(s[:i])
			i -= n
			continue
		}
		text := t.text
		if t.kind == tokVar {
			text = vals[t.idx]
		}
		if i < len(text) {
			return 0, false
		}
		if p.fold {
			if !strings.EqualFold(s[i-len(text):i], text) {
				return 0, false
			}
		} else if s[i-len(text):i] != text {
			return 0, false
		}
		i -= len(text)
	}
	return i, true
}

// An arnPattern matches an ARN component by component, as the Arn*
// condition operators do: a wildcard never spans the ':' between the
// partition, service, region, account and resource. The resource, the
// sixth component, may itself contain ':'.
type arnPattern struct {
	parts [6]pattern
	whole *pattern // set when the policy value has fewer than six components
}

func newARNPattern(s string, vars bool) (arnPattern, error) {
	toks, err := tokenize(s, true, vars)
	if err != nil {
		return arnPattern{}, err
	}
	comps := [][]token{nil}
	for _, t := range toks {
		if t.kind != tokLit || len(comps) == 6 {
			comps[len(comps)-1] = append(comps[len(comps)-1], t)
			continue
		}
		text := t.text
		for len(comps) < 6 {
			k := strings.IndexByte(text, ':')
			if k < 0 {
				break
			}
			if k > 0 {
				comps[len(comps)-1] = append(comps[len(comps)-1], token{kind: tokLit, text: text[:k]})
			}
			comps = append(comps, nil)
			text = text[k+1:]
		}
		if text != "" {
			comps[len(comps)-1] = append(comps[len(comps)-1], token{kind: tokLit, text: text})
		}
	}
	if len(comps) < 6 {
		// Not an ARN as written: "*", or a variable such as
		// ${aws:PrincipalArn} that stands for a whole ARN.
		p := compile(toks, false)
		if p.nvars == 0 && !p.hasWildcard() {
			return arnPattern{}, fmt.Errorf("%q is not an ARN (arn:partition:service:region:account:resource)", s)
		}
		return arnPattern{whole: &p}, nil
	}
	var a arnPattern
	for i, c := range comps {
		a.parts[i] = compile(c, false)
	}
	return a, nil
}

// match reports whether the ARN s matches. A value that is not an ARN
// matches nothing.
func (a *arnPattern) match(s string, kv keys) bool {
	if a.whole != nil {
		return a.whole.match(s, kv)
	}
	rest := s
	for i := range 5 {
		k := strings.IndexByte(rest, ':')
		if k < 0 || !a.parts[i].match(rest[:k], kv) {
			return false
		}
		rest = rest[k+1:]
	}
	return a.parts[5].match(rest, kv)
}
