package main

import (
	"os"
	"strconv"
	"strings"
)

// machineCPU is the whole machine's busy and total time, in jiffies,
// from /proc/stat.
type machineCPU struct{ busy, total int64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return machineCPU{}
	}
	var c machineCPU
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		c.total += n
		if i != 3 && i != 4 { // idle, iowait
			c.busy += n
		}
	}
	return c
}

// busySince is the share of the machine's CPU time that was busy since c.
func (c machineCPU) busySince() float64 {
	now := readMachineCPU()
	if now.total <= c.total {
		return 0
	}
	return float64(now.busy-c.busy) / float64(now.total-c.total)
}
