package metrics

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// AddProcess registers the Go runtime's and the process's usual series,
// under the names Prometheus' own client gives them where it has them
// (all but go_gc_cycles_total, in place of its go_gc_duration_seconds):
// go_goroutines, go_threads, go_info, go_memstats_heap_alloc_bytes,
// go_memstats_sys_bytes, go_gc_cycles_total and, where /proc exists,
// process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds.
func (r *Registry) AddProcess() {
	r.NewGaugeFunc("go_goroutines", "Number of goroutines that currently exist.", func() (float64, bool) {
		return float64(runtime.NumGoroutine()), true
	})
	r.NewGaugeFunc("go_threads", "Number of OS threads created.", func() (float64, bool) {
		n, _ := runtime.ThreadCreateProfile(nil)
		return float64(n), true
	})
	r.NewGaugeFunc("go_info", "Information about the Go environment.", func() (float64, bool) { return 1, true },
		"version", runtime.Version())
	runtimeValue := func(name string) func() (float64, bool) {
		return func() (float64, bool) {
			s := []metrics.Sample{{Name: name}}
			metrics.Read(s)
			if s[0].Value.Kind() != metrics.KindUint64 {
				return 0, false
			}
			return float64(s[0].Value.Uint64()), true
		}
	}
	r.NewGaugeFunc("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.",
		runtimeValue("/memory/classes/heap/objects:bytes"))
	r.NewGaugeFunc("go_memstats_sys_bytes", "Bytes of memory obtained from the OS.",
		runtimeValue("/memory/classes/total:bytes"))
	r.NewCounterFunc("go_gc_cycles_total", "Completed garbage-collection cycles.",
		runtimeValue("/gc/cycles/total:gc-cycles"))

	r.NewCounterFunc("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", func() (float64, bool) {
		s, ok := readStat()
		return float64(s.utime+s.stime) / clockTicks, ok
	})
	r.NewGaugeFunc("process_resident_memory_bytes", "Resident memory size in bytes.", func() (float64, bool) {
		s, ok := readStat()
		return float64(s.rss * int64(os.Getpagesize())), ok
	})
	r.NewGaugeFunc("process_virtual_memory_bytes", "Virtual memory size in bytes.", func() (float64, bool) {
		s, ok := readStat()
		return float64(s.vsize), ok
	})
	r.NewGaugeFunc("process_open_fds", "Number of open file descriptors.", func() (float64, bool) {
		fds, err := os.ReadDir("/proc/self/fd")
		return float64(len(fds)), err == nil
	})
	r.NewGaugeFunc("process_max_fds", "Maximum number of open file descriptors.", func() (float64, bool) {
		var lim syscall.Rlimit
		err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		return float64(lim.Cur), err == nil
	})
	r.NewGaugeFunc("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.", func() (float64, bool) {
		return float64(started.UnixNano()) / 1e9, true
	})
}

// started approximates the process's start: this package's initialisation.
var started = time.Now()

// clockTicks is USER_HZ, the unit of /proc/self/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// stat holds the fields of /proc/self/stat the process series use.
type stat struct {
	utime, stime uint64 // clock ticks
	vsize        uint64 // bytes
	rss          int64  // pages
}

// readStat parses /proc/self/stat (proc(5)); false when it cannot.
func readStat() (stat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return stat{}, false
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 22 {
		return stat{}, false
	}
	var s stat
	var errs [4]error
	s.utime, errs[0] = strconv.ParseUint(f[14-3], 10, 64)
	s.stime, errs[1] = strconv.ParseUint(f[15-3], 10, 64)
	s.vsize, errs[2] = strconv.ParseUint(f[23-3], 10, 64)
	s.rss, errs[3] = strconv.ParseInt(f[24-3], 10, 64)
	for _, err := range errs {
		if err != nil {
			return stat{}, false
		}
	}
	return s, true
}
