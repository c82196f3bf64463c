package policy

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		fold   bool
		want   bool
	}{
		{"", "", false, true},
		{"", "a", false, false},
		{"*", "", false, true},
		{"*", "anything/at:all", false, true},
		{"**", "x", false, true},
		{"?", "", false, false},
		{"?", "é", false, true}, // one character, two bytes
		{"?", "€", false, true},
		{"??", "€", false, false},
		{"*??", "€", false, false},
		{"*?", "€", false, true},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"a*", "a", false, true},
		{"*a", "ba", false, true},
		{"*a", "ab", false, false},
		{"a*b*c", "abc", false, true},
		{"a*b*c", "axxbyyc", false, true},
		{"a*b*c", "axxbyy", false, false},
		{"a*ab", "aab", false, true},
		{"*ab*ab", "abab", false, true},
		{"*ab*ab", "abxab", false, true},
		{"*ab*ab", "aba", false, false},
		{"*a*a*a*", "aa", false, false},
		{"a*?b", "ab", false, false},
		{"a*?b", "axb", false, true},
		{"*.txt", "dir/file.txt", false, true},
		{"arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:us-east-1:123:instance/i-1", false, true},
		{"EC2:Describe*", "ec2:describevpcs", true, true},
		{"EC2:Describe*", "ec2:describevpcs", false, false},
		{"ec2:?escribe*", "EC2:DESCRIBEVPCS", true, true},
	}
	for _, tt := range tests {
		p, err := newPattern(tt.pat, true, false, tt.fold)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.match(tt.s, nil); got != tt.want {
			t.Errorf("%q (fold %v) matching %q: got %v, want %v", tt.pat, tt.fold, tt.s, got, tt.want)
		}
	}
}

// TestPatternRandom compares the matcher with a regular expression on
// random patterns and strings over a small alphabet.
func TestPatternRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(alphabet []string, n int) string {
		var b strings.Builder
		for range r.IntN(n + 1) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	patAlpha := []string{"a", "b", "*", "?", "é", ":"}
	strAlpha := []string{"a", "b", "é", ":"}
	for range 20000 {
		pat, s := pick(patAlpha, 7), pick(strAlpha, 8)
		var re strings.Builder
		re.WriteString("^")
		for _, c := range pat {
			switch c {
			case '*':
				re.WriteString(".*")
			case '?':
				re.WriteString(".")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		want := regexp.MustCompile(re.String()).MatchString(s)
		p, err := newPattern(pat, true, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.match(s, nil); got != want {
			t.Fatalf("%q matching %q: got %v, want %v", pat, s, got, want)
		}
	}
}

func TestVariables(t *testing.T) {
	kv := keys{"aws:username": {"alice"}, "x:multi": {"a", "b"}, "x:empty": {""}}
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"${aws:username}", "alice", true},
		{"${aws:username}", "bob", false},
		{"user/${aws:username}/*", "user/alice/x", true},
		{"${aws:userid}", "", false},
		{"${aws:userid, 'none'}", "none", true},
		{"${aws:userid,'none'}", "none", true},
		{"${ aws:userid , 'none' }", "none", true},
		{"${aws:userid, ''}", "", true},
		{"${aws:userid, 'a''b'}", "a'b", true},
		{"${aws:userid, 'a}b'}", "a}b", true},
		{"${aws:userid, '*'}", "x", false}, // a default is literal too
		{"${aws:userid, '*'}", "*", true},
		{"${x:multi}", "a", false},
		{"${x:multi, 'm'}", "m", true},
		{"${x:empty}", "", true},
		{"a${x:empty}*b", "ab", true},
		{"${*}${?}${$}", "*?$", true},
		{"$", "$", true},
		{"$x", "$x", true},
		{"a$", "a$", true},
		{"${aws:username}${aws:username}", "alicealice", true},
		{"*${aws:username}*${aws:username}", "xalice-alice", true},
		{"*${aws:username}?", "alicealice!", true},
		{"${a:1}${a:2}${a:3}${a:4}${a:5}", "12345", true}, // more variables than the stack buffer
	}
	kv["a:1"], kv["a:2"], kv["a:3"], kv["a:4"], kv["a:5"] = []string{"1"}, []string{"2"}, []string{"3"}, []string{"4"}, []string{"5"}
	for _, tt := range tests {
		p, err := newPattern(tt.pat, true, true, false)
		if err != nil {
			t.Fatalf("%q: %v", tt.pat, err)
		}
		if got := p.match(tt.s, kv); got != tt.want {
			t.Errorf("%q matching %q: got %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}

func TestVariableErrors(t *testing.T) {
	for _, pat := range []string{
		"${aws:username",
		"${}",
		"${ }",
		"${aws user}",
		"${aws:username, nobody}",
		"${aws:username, 'nobody}",
		"${aws:username, 'nobody'",
		"${aws:username, 'nobody' x}",
		"${*, 'x'}",
		"${a${b}}",
	} {
		if _, err := newPattern(pat, true, true, false); err == nil {
			t.Errorf("%q: no error", pat)
		}
		if _, err := newPattern(pat, true, false, false); err != nil {
			t.Errorf("%q without variables: %v", pat, err)
		}
	}
}
