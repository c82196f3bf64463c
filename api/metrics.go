package api

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API's Prometheus collectors.
type Metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	throttled     prometheus.Counter
	auditFailures prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (if not
// nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_api_requests_total",
			Help: "API requests by service, operation, HTTP status and AWS error code.",
		}, []string{"service", "operation", "status", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "postern_api_request_duration_seconds",
			Help:    "API request latency by service and operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"service", "operation"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postern_api_throttled_total",
			Help: "Requests refused with ThrottlingException.",
		}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postern_audit_write_failures_total",
			Help: "Requests failed because their audit record could not be written.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.throttled, m.auditFailures)
	}
	return m
}

func (m *Metrics) observe(c *call, status int, err error) {
	svc, op := "unknown", "unknown"
	if c.svc != nil {
		svc = c.svc.signingName
		if c.op != nil {
			op = c.opName
		}
	}
	code := ""
	if err != nil {
		code = toWire(c.protocol(), err).Code
	}
	m.requests.WithLabelValues(svc, op, strconv.Itoa(status), code).Inc()
	m.duration.WithLabelValues(svc, op).Observe(c.s.now().Sub(c.start).Seconds())
}
