package console

import (
	"context"
	"time"

	"github.com/postern-dev/postern"
)

// Limits say how failed sign-ins slow down and then lock a user name or a
// source address. Counts are kept in the store, shared by every replica.
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

// failureStore keeps the counts, shared by every replica.
type failureStore interface {
	SignInFailures(ctx context.Context, keys []string, since time.Time) (map[string]postern.SignInFailure, error)
	ReserveSignInAttempt(ctx context.Context, keys []string, limits []int, at, since time.Time) (bool, error)
	ReleaseSignInAttempt(ctx context.Context, keys []string) error
	ResetSignInFailures(ctx context.Context, key string) error
}

// limiter counts failed sign-ins per key ("user:alice", "ip:192.0.2.1",
// or "device:ID" in place of the user key for a browser that signed in as
// that user before) in the store, so that delays and locks hold across
// replicas; a count whose last failure is older than LockFor is forgotten.
type limiter struct {
	lim Limits
	st  failureStore
}

func newLimiter(l Limits, st failureStore) *limiter {
	return &limiter{lim: l, st: st}
}

func (l *limiter) thresholds(key string) (free, lock int) {
	if len(key) > 3 && key[:3] == "ip:" {
		return l.lim.FreeFailures * l.lim.IPFactor, l.lim.LockAfter * l.lim.IPFactor
	}
	return l.lim.FreeFailures, l.lim.LockAfter
}

// wait returns how long the callers behind keys must wait before another
// attempt (0: go ahead), and whether a key is locked rather than delayed.
func (l *limiter) wait(ctx context.Context, now time.Time, keys ...string) (time.Duration, bool, error) {
	counts, err := l.st.SignInFailures(ctx, keys, l.since(now))
	if err != nil {
		return 0, false, err
	}
	var longest time.Duration
	locked := false
	for _, k := range keys {
		f, ok := counts[k]
		if !ok {
			continue
		}
		free, lock := l.thresholds(k)
		var until time.Time
		switch {
		case f.Count >= lock:
			until = f.Last.Add(l.lim.LockFor)
		case f.Count > free:
			until = f.Last.Add(min(l.lim.BaseDelay<<min(f.Count-free-1, 16), maxDelay))
		default:
			continue
		}
		if d := until.Sub(now); d > longest {
			longest = d
			locked = f.Count >= lock
		}
	}
	return longest, locked, nil
}

// reserve counts the attempt about to be checked as a failure under each
// key, before the check, so that concurrent attempts cannot all pass a
// lock that none of them has reached yet. It reports false, counting
// nothing, when a key is locked already. An attempt that proves to be no
// guess is taken back with release.
func (l *limiter) reserve(ctx context.Context, now time.Time, keys ...string) (bool, error) {
	limits := make([]int, len(keys))
	for i, k := range keys {
		_, limits[i] = l.thresholds(k)
	}
	return l.st.ReserveSignInAttempt(ctx, keys, limits, now, l.since(now))
}

// since is the oldest last failure whose count still holds at now: a lock
// ends LockFor after the failure that set it.
func (l *limiter) since(now time.Time) time.Time {
	return now.Add(-l.lim.LockFor + time.Nanosecond)
}

// release takes back an attempt reserve counted under keys.
func (l *limiter) release(ctx context.Context, keys ...string) error {
	return l.st.ReleaseSignInAttempt(ctx, keys)
}

// reset forgets the failures of key after a success.
func (l *limiter) reset(ctx context.Context, key string) error {
	return l.st.ResetSignInFailures(ctx, key)
}
