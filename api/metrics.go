package api

import (
	"strconv"

	"github.com/postern-dev/postern/metrics"
)

// Metrics are the API's series.
type Metrics struct {
	requests      *metrics.CounterVec
	duration      *metrics.HistogramVec
	throttled     *metrics.Counter
	auditFailures *metrics.Counter
}

// NewMetrics creates the series in reg (a registry of their own when
// nil, that nothing serves).
func NewMetrics(reg *metrics.Registry) *Metrics {
	if reg == nil {
		reg = metrics.NewRegistry()
	}
	return &Metrics{
		requests: reg.NewCounterVec("postern_api_requests_total",
			"API requests by service, operation, HTTP status and AWS error code.",
			"service", "operation", "status", "code"),
		duration: reg.NewHistogramVec("postern_api_request_duration_seconds",
			"API request latency by service and operation.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
			"service", "operation"),
		throttled: reg.NewCounter("postern_api_throttled_total",
			"Requests refused with ThrottlingException."),
		auditFailures: reg.NewCounter("postern_audit_write_failures_total",
			"Requests failed because their audit record could not be written."),
	}
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
	m.requests.With(svc, op, strconv.Itoa(status), code).Inc()
	m.duration.With(svc, op).Observe(c.s.now().Sub(c.start).Seconds())
}
