package api

import (
	"testing"
	"time"
)

// allowed counts how many of n calls at one instant the throttle lets
// through for key.
func allowed(th *throttle, key string, n int, at time.Time) int {
	got := 0
	for range n {
		if th.allow(key, at) {
			got++
		}
	}
	return got
}

func TestThrottleShareAmongReplicas(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := newThrottle(ThrottleConfig{Rate: 10, Burst: 10})
	if got := allowed(th, "AKIAONE", 20, now); got != 10 {
		t.Errorf("one replica: %d of 20 calls at once allowed, want the burst of 10", got)
	}
	// A second replica joins: each allows half, for new keys and for the
	// buckets it has.
	th.setShare(2)
	if got := allowed(th, "AKIATWO", 20, now); got != 5 {
		t.Errorf("two replicas, a new key: %d of 20 allowed, want 5", got)
	}
	later := now.Add(2 * time.Second) // AKIAONE's bucket refills at 5/s now
	if got := allowed(th, "AKIAONE", 20, later); got != 5 {
		t.Errorf("two replicas, a key seen before: %d of 20 allowed after 2 s, want the burst of 5", got)
	}
	// Back to one: the whole rate again.
	th.setShare(1)
	if got := allowed(th, "AKIATHREE", 20, now); got != 10 {
		t.Errorf("back to one replica: %d of 20 allowed, want 10", got)
	}
	// More replicas than burst: each still allows one.
	th.setShare(50)
	if got := allowed(th, "AKIAFOUR", 5, now); got != 1 {
		t.Errorf("50 replicas, burst 10: %d allowed, want 1", got)
	}
}
