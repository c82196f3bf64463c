package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func scrape(t *testing.T, r *Registry) (string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b), rec.Header().Get("Content-Type")
}

// The exposition is exactly the text format: families with HELP and TYPE,
// the constant labels first in every series, values escaped, histogram
// buckets cumulative with +Inf, sum and count.
func TestExposition(t *testing.T) {
	r := NewRegistry("replica", "a")
	req := r.NewCounterVec("x_requests_total", "Requests by op.\nSecond line, a \\ too.", "op", "code")
	req.With("Describe", "").Inc()
	req.With("Describe", "").Inc()
	req.With("Send", `Bad"Quote\`+"\n").Inc()
	dur := r.NewHistogramVec("x_seconds", "Latency.", []float64{0.1, 1}, "op")
	for _, v := range []float64{0.05, 0.1, 0.5, 3} {
		dur.With("Describe").Observe(v)
	}
	r.NewCounter("x_throttled_total", "Throttled.")
	r.NewCounterVec("x_unused_total", "No series yet.", "op")
	r.NewGaugeFunc("x_info", "Info.", func() (float64, bool) { return 1, true }, "version", "1.2")
	r.NewGaugeFunc("x_absent", "Left out.", func() (float64, bool) { return 0, false })

	got, ctype := scrape(t, r)
	want := `# HELP x_requests_total Requests by op.\nSecond line, a \\ too.
# TYPE x_requests_total counter
x_requests_total{replica="a",op="Describe",code=""} 2
x_requests_total{replica="a",op="Send",code="Bad\"Quote\\\n"} 1
# HELP x_seconds Latency.
# TYPE x_seconds histogram
x_seconds_bucket{replica="a",op="Describe",le="0.1"} 2
x_seconds_bucket{replica="a",op="Describe",le="1"} 3
x_seconds_bucket{replica="a",op="Describe",le="+Inf"} 4
x_seconds_sum{replica="a",op="Describe"} 3.65
x_seconds_count{replica="a",op="Describe"} 4
# HELP x_throttled_total Throttled.
# TYPE x_throttled_total counter
x_throttled_total{replica="a"} 0
# HELP x_info Info.
# TYPE x_info gauge
x_info{replica="a",version="1.2"} 1
`
	if got != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", got, want)
	}
	if ctype != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ctype)
	}
}

// Prometheus' own parser reads what the registry writes, the process
// series included, and finds the values put in.
func TestPrometheusParsesIt(t *testing.T) {
	r := NewRegistry("replica", "b")
	r.AddProcess()
	c := r.NewCounterVec("y_total", "Y.", "op")
	h := r.NewHistogramVec("y_seconds", "Y latency.", []float64{.001, .01}, "op")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.With("a").Inc()
				h.With("a").Observe(0.005)
			}
		})
	}
	wg.Wait()
	text, _ := scrape(t, r)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%v in:\n%s", err, text)
	}
	if got := fams["y_total"].GetMetric()[0].GetCounter().GetValue(); got != 8000 {
		t.Errorf("y_total = %v, want 8000", got)
	}
	hist := fams["y_seconds"].GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 8000 || hist.GetBucket()[0].GetCumulativeCount() != 0 || hist.GetBucket()[1].GetCumulativeCount() != 8000 {
		t.Errorf("y_seconds: count %d, buckets %v", hist.GetSampleCount(), hist.GetBucket())
	}
	if s := hist.GetSampleSum(); s < 39.99 || s > 40.01 {
		t.Errorf("y_seconds sum %v, want 40", s)
	}
	for _, name := range []string{"go_goroutines", "go_threads", "go_info", "go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes",
		"go_gc_cycles_total", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
		"process_open_fds", "process_max_fds", "process_start_time_seconds"} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("no %s in:\n%s", name, text)
			continue
		}
		m := f.GetMetric()[0]
		if l := m.GetLabel(); len(l) == 0 || l[0].GetName() != "replica" || l[0].GetValue() != "b" {
			t.Errorf("%s labels %v, want replica=b first", name, l)
		}
	}
	if rss := fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue(); rss < 1<<20 {
		t.Errorf("process_resident_memory_bytes = %v, not a process's", rss)
	}
	// The kernel counts CPU time in ticks of 10 ms: a fast run may not
	// have used one yet. Spend some, then the series must agree with
	// getrusage to within a tick or two.
	for cpuSeconds(t) < 0.05 {
	}
	before := cpuSeconds(t)
	text, _ = scrape(t, r)
	after := cpuSeconds(t)
	fams, err = p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if cpu := fams["process_cpu_seconds_total"].GetMetric()[0].GetCounter().GetValue(); cpu < before-0.02 || cpu > after+0.01 {
		t.Errorf("process_cpu_seconds_total = %v, getrusage says %.3f to %.3f", cpu, before, after)
	}
}

// cpuSeconds is the process's user and system CPU time by getrusage.
func cpuSeconds(t *testing.T) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func TestLabelValuesMustMatch(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("z_total", "Z.", "a", "b")
	defer func() {
		if recover() == nil {
			t.Error("With with one value of two did not panic")
		}
	}()
	c.With("only")
}
