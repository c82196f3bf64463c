package tunnel_test

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var warmUp sync.Once

// checkLeaks fails t when, after t's other cleanups, more goroutines or
// file descriptors exist than when it was called. It polls for up to five
// seconds, since goroutines that were told to stop take a moment to go, and
// on failure names the goroutines and descriptors that stayed. Call it
// first, so that its cleanup runs last; it cannot serve parallel tests.
func checkLeaks(t *testing.T) {
	t.Helper()
	warmUp.Do(func() {
		// The first socket opens the runtime poller's descriptors for good.
		if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
			ln.Close()
		}
	})
	goroutines, stacks := runtime.NumGoroutine(), goroutineStacks()
	fds := openFDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			g, f := runtime.NumGoroutine(), openFDs()
			if g <= goroutines && len(f) <= len(fds) {
				return
			}
			if time.Now().After(deadline) {
				if g > goroutines {
					t.Errorf("%d goroutines leaked:\n%s", g-goroutines, newStacks(stacks, goroutineStacks()))
				}
				if len(f) > len(fds) {
					t.Errorf("%d file descriptors leaked: %s", len(f)-len(fds), newFDs(fds, f))
				}
				return
			}
			time.Sleep(10 * time.Millisecond) // polling, not synchronising
		}
	})
}

var (
	goroutineHeader = regexp.MustCompile(`^goroutine \d+ \[[^\]]*\]:\n`)
	stackArgs       = regexp.MustCompile(`(?m)\([^()\n]*\)$`)
	stackOffset     = regexp.MustCompile(` \+0x[0-9a-f]+`)
	inGoroutine     = regexp.MustCompile(` in goroutine \d+`)
)

// goroutineStacks counts the goroutines by stack, with the parts that vary
// between identical goroutines (ids, arguments, offsets) removed.
func goroutineStacks() map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.HasPrefix(g, "goroutine ") && strings.Contains(g[:strings.IndexByte(g, '\n')+1], "[running]") {
			continue // the caller itself
		}
		g = goroutineHeader.ReplaceAllString(g, "")
		g = stackArgs.ReplaceAllString(g, "(…)")
		g = stackOffset.ReplaceAllString(g, "")
		g = inGoroutine.ReplaceAllString(g, "")
		out[strings.TrimSpace(g)]++
	}
	return out
}

func newStacks(before, after map[string]int) string {
	var b strings.Builder
	for stack, n := range after {
		if extra := n - before[stack]; extra > 0 {
			fmt.Fprintf(&b, "%d × %s\n\n", extra, stack)
		}
	}
	return b.String()
}

// openFDs maps this process's open file descriptors to what they are.
// Without /proc it reports none, and the check passes.
func openFDs() map[string]string {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out[e.Name()] = target
	}
	return out
}

func newFDs(before, after map[string]string) string {
	var s []string
	for fd, target := range after {
		if before[fd] != target {
			s = append(s, fd+" → "+target)
		}
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
