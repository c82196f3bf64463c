package benchrig

import (
	"math/rand/v2"
	"slices"
	"time"
)

// CPUProbe measures this machine's speed at the moment: the time, in
// milliseconds, one goroutine takes to sort a million pseudo-random
// integers (branches and memory, like server code; the best of three).
// The hosts these benchmarks run on are not equally fast from one run to
// the next (shared cores), so a report prints the probe taken before and
// after its runs: absolute figures are comparable across runs only when
// their probes are.
func CPUProbe() float64 {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]int, 1_000_000)
	for i := range src {
		src[i] = r.Int()
	}
	best := time.Duration(1<<63 - 1)
	for range 3 {
		s := slices.Clone(src)
		start := time.Now()
		slices.Sort(s)
		best = min(best, time.Since(start))
	}
	return float64(best) / float64(time.Millisecond)
}
