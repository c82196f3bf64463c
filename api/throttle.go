package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ThrottleConfig sets the per-access-key token bucket.
type ThrottleConfig struct {
	Rate  float64 // requests per second; 0 disables throttling
	Burst int     // bucket size; 0 means 2×Rate
}

// DefaultThrottle is generous enough for automation and still stops a
// runaway client long before it hurts the server.
var DefaultThrottle = ThrottleConfig{Rate: 200, Burst: 400}

// throttle holds one token bucket per access key. Buckets idle for longer
// than idleAfter are dropped so that the map cannot grow without bound.
type throttle struct {
	cfg     ThrottleConfig
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
	// share is how many replicas serve the same keys: each allows its
	// share of the rate and burst, so that a client spreading its calls
	// over replicas gets no more than the configured rate in all.
	share int
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

const idleAfter = 10 * time.Minute

func newThrottle(cfg ThrottleConfig) *throttle {
	if cfg.Burst == 0 {
		cfg.Burst = int(2 * cfg.Rate)
		if cfg.Burst < 1 {
			cfg.Burst = 1
		}
	}
	return &throttle{cfg: cfg, buckets: map[string]*bucket{}, share: 1}
}

// limits returns the rate and burst of this replica's share.
func (t *throttle) limits() (rate.Limit, int) {
	return rate.Limit(t.cfg.Rate / float64(t.share)), max(1, t.cfg.Burst/t.share)
}

// setShare divides the limits among n replicas.
func (t *throttle) setShare(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.share = max(1, n)
	r, burst := t.limits()
	for _, b := range t.buckets {
		b.lim.SetLimit(r)
		b.lim.SetBurst(burst)
	}
}

// allow takes a token for key at time now.
func (t *throttle) allow(key string, now time.Time) bool {
	if t.cfg.Rate <= 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) > idleAfter {
		for k, b := range t.buckets {
			if now.Sub(b.seen) > idleAfter {
				delete(t.buckets, k)
			}
		}
		t.swept = now
	}
	b := t.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(t.limits())}
		t.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
