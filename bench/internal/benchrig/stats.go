package benchrig

import (
	"fmt"
	"math"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"
)

// Samples are measured durations.
type Samples []time.Duration

// Quantile is the nearest-rank q-quantile (q in (0, 1]).
func (s Samples) Quantile(q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(math.Ceil(q*float64(len(c)))) - 1
	return c[max(0, min(i, len(c)-1))]
}

// Median is the 0.5-quantile.
func (s Samples) Median() time.Duration { return s.Quantile(0.5) }

// P99 is the 0.99-quantile.
func (s Samples) P99() time.Duration { return s.Quantile(0.99) }

// MS formats a duration in milliseconds.
func MS(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// Verdict is a report's "met" column.
func Verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// ErrorCount adds up failures counted by kind.
func ErrorCount(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// FormatErrors lists failures counted by kind: "3 × Throttling; 1 × …".
func FormatErrors(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d × %s", m[k], k)
	}
	return strings.Join(out, "; ")
}

// SSHVersion is the installed OpenSSH client's version, for reports.
func SSHVersion() string {
	out, err := exec.Command("ssh", "-V").CombinedOutput()
	if err != nil {
		return "OpenSSH (version unknown)"
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	return v
}
