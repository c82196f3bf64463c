// Package metrics keeps a process's counters and histograms and serves
// them in the Prometheus text exposition format (version 0.0.4), with the
// usual go_* and process_* series beside them.
//
// It replaces the Prometheus client library, which every command of the
// postern binary paid for at start-up (its package initialisation and that
// of protobuf, which it pulls in, took about a fifth of the time a `postern
// proxy` spends before its first byte) although only the server serves
// metrics.
package metrics

import (
	"bufio"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds metric families and writes them, each series carrying
// the registry's constant labels first.
type Registry struct {
	constLabels []string // name, value, name, value…

	mu       sync.Mutex
	families []family
}

// family is one metric name with its help, type and series.
type family interface {
	write(w *bufio.Writer, constLabels []string)
}

// NewRegistry returns an empty registry whose series all carry the given
// constant labels, as name, value pairs.
func NewRegistry(constLabels ...string) *Registry {
	if len(constLabels)%2 != 0 {
		panic("metrics: constant labels must come as name, value pairs")
	}
	return &Registry{constLabels: constLabels}
}

func (r *Registry) add(f family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.families = append(r.families, f)
}

// ServeHTTP writes every family in the text exposition format.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	r.mu.Lock()
	families := slices.Clone(r.families)
	r.mu.Unlock()
	for _, f := range families {
		f.write(bw, r.constLabels)
	}
	_ = bw.Flush()
}

// Counter is a count that only goes up.
type Counter struct{ n atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.n.Add(1) }

// Value is the count so far.
func (c *Counter) Value() uint64 { return c.n.Load() }

// Histogram counts observations into cumulative buckets.
type Histogram struct {
	bounds  []float64       // upper bounds, ascending; +Inf is implied
	counts  []atomic.Uint64 // per bucket, not cumulative; one more than bounds
	sumBits atomic.Uint64   // float64 bits of the sum of observations
}

func newHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // the first bound ≥ v: le is inclusive
	h.counts[i].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// vec is a family's series, one per combination of label values.
type vec[S any] struct {
	name, help, kind string
	labels           []string
	make             func() *S
	write1           func(w *bufio.Writer, name, labels string, s *S)

	mu     sync.RWMutex
	series map[string]*entry[S]
}

type entry[S any] struct {
	values []string
	s      *S
}

// with returns the series for values, creating it on first use.
func (v *vec[S]) with(values []string) *S {
	if len(values) != len(v.labels) {
		panic("metrics: " + v.name + " takes " + strconv.Itoa(len(v.labels)) + " label values")
	}
	key := strings.Join(values, "\xff")
	v.mu.RLock()
	e := v.series[key]
	v.mu.RUnlock()
	if e != nil {
		return e.s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if e = v.series[key]; e == nil {
		e = &entry[S]{values: slices.Clone(values), s: v.make()}
		v.series[key] = e
	}
	return e.s
}

func (v *vec[S]) write(w *bufio.Writer, constLabels []string) {
	v.mu.RLock()
	entries := make([]*entry[S], 0, len(v.series))
	for _, e := range v.series {
		entries = append(entries, e)
	}
	v.mu.RUnlock()
	if len(entries) == 0 {
		return
	}
	slices.SortFunc(entries, func(a, b *entry[S]) int { return slices.Compare(a.values, b.values) })
	writeHeader(w, v.name, v.help, v.kind)
	pairs := slices.Clone(constLabels)
	for _, e := range entries {
		pairs = pairs[:len(constLabels)]
		for i, l := range v.labels {
			pairs = append(pairs, l, e.values[i])
		}
		v.write1(w, v.name, labelSet(pairs), e.s)
	}
}

func newVec[S any](r *Registry, name, help, kind string, labels []string, make func() *S, write1 func(*bufio.Writer, string, string, *S)) *vec[S] {
	v := &vec[S]{name: name, help: help, kind: kind, labels: labels, make: make, write1: write1, series: map[string]*entry[S]{}}
	r.add(v)
	return v
}

// CounterVec is a counter per combination of label values.
type CounterVec struct{ v *vec[Counter] }

// NewCounterVec registers a counter family with the given label names.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	return &CounterVec{newVec(r, name, help, "counter", labels, func() *Counter { return new(Counter) }, writeCounter)}
}

// With returns the counter for the label values, in the order the labels
// were named.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values) }

// NewCounter registers a counter without labels of its own.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

func writeCounter(w *bufio.Writer, name, labels string, c *Counter) {
	writeSample(w, name, labels, strconv.FormatUint(c.Value(), 10))
}

// HistogramVec is a histogram per combination of label values.
type HistogramVec struct{ v *vec[Histogram] }

// NewHistogramVec registers a histogram family with the given bucket
// upper bounds (ascending) and label names.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if !slices.IsSorted(buckets) {
		panic("metrics: " + name + ": buckets must ascend")
	}
	bounds := slices.Clone(buckets)
	return &HistogramVec{newVec(r, name, help, "histogram", labels, func() *Histogram { return newHistogram(bounds) }, writeHistogram)}
}

// With returns the histogram for the label values.
func (h *HistogramVec) With(values ...string) *Histogram { return h.v.with(values) }

func writeHistogram(w *bufio.Writer, name, labels string, h *Histogram) {
	// A bucket's labels are the series' and le.
	inner := strings.TrimSuffix(strings.TrimPrefix(labels, "{"), "}")
	if inner != "" {
		inner += ","
	}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		le := "+Inf"
		if i < len(h.bounds) {
			le = formatFloat(h.bounds[i])
		}
		writeSample(w, name+"_bucket", "{"+inner+`le="`+le+`"}`, strconv.FormatUint(cum, 10))
	}
	writeSample(w, name+"_sum", labels, formatFloat(math.Float64frombits(h.sumBits.Load())))
	writeSample(w, name+"_count", labels, strconv.FormatUint(cum, 10))
}

// funcFamily is a gauge or counter whose value is read when written.
type funcFamily struct {
	name, help, kind string
	labels           []string // its own name, value pairs
	value            func() (float64, bool)
}

func (f funcFamily) write(w *bufio.Writer, constLabels []string) {
	v, ok := f.value()
	if !ok {
		return
	}
	writeHeader(w, f.name, f.help, f.kind)
	writeSample(w, f.name, labelSet(append(slices.Clone(constLabels), f.labels...)), formatFloat(v))
}

// NewGaugeFunc registers a gauge read from value at each scrape; a false
// second result leaves the series out.
func (r *Registry) NewGaugeFunc(name, help string, value func() (float64, bool), labels ...string) {
	r.add(funcFamily{name, help, "gauge", labels, value})
}

// NewCounterFunc registers a counter read from value at each scrape.
func (r *Registry) NewCounterFunc(name, help string, value func() (float64, bool)) {
	r.add(funcFamily{name, help, "counter", nil, value})
}

func writeHeader(w *bufio.Writer, name, help, kind string) {
	w.WriteString("# HELP " + name + " " + helpEscaper.Replace(help) + "\n")
	w.WriteString("# TYPE " + name + " " + kind + "\n")
}

func writeSample(w *bufio.Writer, name, labels, value string) {
	w.WriteString(name + labels + " " + value + "\n")
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// labelSet renders name, value pairs as {a="1",b="2"}, or "" for none.
func labelSet(pairs []string) string {
	if len(pairs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i] + `="` + valueEscaper.Replace(pairs[i+1]) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
