package console

import (
	"sync"
	"time"
)

// Limits say how failed sign-ins slow down and then lock a user name or a
// source address. Counts are kept per server process.
type Limits struct {
	// FreeFailures may fail in a row with no delay.
	FreeFailures int
	// BaseDelay is the wait after the first failure beyond FreeFailures;
	// it doubles with each further failure.
	BaseDelay time.Duration
	// LockAfter failures in a row lock the user name for LockFor.
	LockAfter int
	LockFor   time.Duration
	// IPFactor multiplies FreeFailures and LockAfter for a source
	// address, which many users may share.
	IPFactor int
}

// DefaultLimits: three free tries, then 1 s, 2 s, and a 15-minute lock
// at the fifth failure; twenty failures from one address lock it.
var DefaultLimits = Limits{FreeFailures: 2, BaseDelay: time.Second, LockAfter: 5, LockFor: 15 * time.Minute, IPFactor: 4}

// maxDelay caps the doubling delays (an address allows many failures
// before it locks).
const maxDelay = time.Minute

// limiter counts failed sign-ins per key ("user:alice", "ip:192.0.2.1").
type limiter struct {
	lim Limits
	mu  sync.Mutex
	m   map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

func newLimiter(l Limits) *limiter {
	return &limiter{lim: l, m: make(map[string]*failures)}
}

func (l *limiter) thresholds(key string) (free, lock int) {
	if len(key) > 3 && key[:3] == "ip:" {
		return l.lim.FreeFailures * l.lim.IPFactor, l.lim.LockAfter * l.lim.IPFactor
	}
	return l.lim.FreeFailures, l.lim.LockAfter
}

// wait returns how long the callers behind keys must wait before another
// attempt (0: go ahead), and whether a key is locked rather than delayed.
func (l *limiter) wait(now time.Time, keys ...string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var longest time.Duration
	locked := false
	for _, k := range keys {
		f := l.current(now, k)
		if f == nil {
			continue
		}
		free, lock := l.thresholds(k)
		var until time.Time
		switch {
		case f.n >= lock:
			until = f.last.Add(l.lim.LockFor)
		case f.n > free:
			until = f.last.Add(min(l.lim.BaseDelay<<min(f.n-free-1, 16), maxDelay))
		default:
			continue
		}
		if d := until.Sub(now); d > longest {
			longest = d
			locked = f.n >= lock
		}
	}
	return longest, locked
}

// current returns the live count of key, forgetting one whose last
// failure is older than LockFor.
func (l *limiter) current(now time.Time, k string) *failures {
	f := l.m[k]
	if f != nil && now.Sub(f.last) >= l.lim.LockFor {
		delete(l.m, k)
		return nil
	}
	return f
}

// fail counts a failure for each key.
func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 100_000 {
		// Forget what has decayed; an attacker cycling names must not
		// grow the map without bound.
		for k := range l.m {
			l.current(now, k)
		}
	}
	for _, k := range keys {
		f := l.current(now, k)
		if f == nil {
			f = &failures{}
			l.m[k] = f
		}
		f.n++
		f.last = now
	}
}

// reset forgets the failures of key after a success.
func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}
