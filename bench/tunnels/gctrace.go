package main

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
)

// gcTrace is one line of GODEBUG=gctrace=1, which the endpoint process
// runs with: the Go runtime's own account of its heap.
type gcTrace struct {
	N      int     // the collection's number
	At     float64 // seconds since the process started
	LiveMB int     // heap live after marking
	Stacks int     // MB of goroutine stacks
}

var gcLine = regexp.MustCompile(`^gc (\d+) @([0-9.]+)s .* (\d+)->(\d+)->(\d+) MB, \d+ MB goal, (\d+) MB stacks`)

// lastGC returns the last collection the log file records.
func lastGC(path string) (gcTrace, bool) {
	f, err := os.Open(path)
	if err != nil {
		return gcTrace{}, false
	}
	defer f.Close()
	var last gcTrace
	ok := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := gcLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		at, _ := strconv.ParseFloat(m[2], 64)
		live, _ := strconv.Atoi(m[5])
		stacks, _ := strconv.Atoi(m[6])
		last, ok = gcTrace{N: n, At: at, LiveMB: live, Stacks: stacks}, true
	}
	return last, ok
}
