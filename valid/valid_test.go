package valid

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// Each check must accept exactly what the regular expression it replaced
// accepts: the expressions are the oracle here, on hand-picked edge cases
// and on many random strings drawn from an alphabet that straddles the
// classes' borders.
func TestChecksMatchTheirExpressions(t *testing.T) {
	cases := []struct {
		name  string
		re    string
		check func(string) bool
		edge  []string
	}{
		{"instance id", `^i-[0-9a-f]{8,17}$`, func(s string) bool { return HexID(s, "i-", 8, 17) },
			[]string{"i-0123456789abcdef0", "i-01234567", "i-0123456", "i-0123456789abcdef01", "i-0123456789ABCDEF0", "x-01234567", "i-", "i", ""}},
		{"endpoint id", `^eice-[0-9a-f]{17}$`, func(s string) bool { return HexID(s, "eice-", 17, 17) },
			[]string{"eice-0123456789abcdef0", "eice-0123456789abcdef", "eice-0123456789abcdef00"}},
		{"activation id", `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`, UUID,
			[]string{"01234567-89ab-cdef-0123-456789abcdef", "01234567-89ab-cdef-0123-456789abcdeF", "01234567089ab-cdef-0123-456789abcdef", "01234567-89ab-cdef-0123-456789abcde"}},
		{"access key id", `^AKIA[A-Z2-7]{16}$`, AccessKeyID,
			[]string{"AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNO1", "AKIAABCDEFGHIJKLMNO7", "ASIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOPQ"}},
		{"IAM name", `^[\w+=,.@-]+$`, IAMName,
			[]string{"alice", "a+b=c,d.e@f_g-h", "a b", "", "é", "a/b"}},
		{"OS user", `^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$`, OSUser,
			[]string{"ubuntu", "_x", "x$", "1x", "-x", "x", "_", "ec2-user", "a.b@c",
				strings.Repeat("a", 32), strings.Repeat("a", 33), strings.Repeat("a", 31) + "@", strings.Repeat("a", 31) + ".",
				strings.Repeat("a", 30) + "@", strings.Repeat("a", 31) + "$", "a$b", "a\n", "root\x00"}},
	}
	// The first alphabet straddles every class's borders; the second
	// mostly stays inside the id classes, so that long valid runs occur.
	alphabets := []string{"aZ_09fgAK27$@.-+=,/ \ni", "0af9-0af9-bG"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		re := regexp.MustCompile(c.re)
		try := func(s string) {
			if got, want := c.check(s), re.MatchString(s); got != want {
				t.Errorf("%s: %q: got %v, the expression says %v", c.name, s, got, want)
			}
		}
		for _, s := range c.edge {
			try(s)
		}
		for range 20000 {
			b := make([]byte, rng.IntN(40))
			alphabet := alphabets[rng.IntN(len(alphabets))]
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			s := string(b)
			// Most random strings fail on their first byte; keep the
			// prefixes valid often enough to reach the rest.
			switch rng.IntN(4) {
			case 0:
				s = "i-" + s
			case 1:
				s = "AKIA" + strings.ToUpper(s)
			}
			try(s)
		}
	}
}
