// Package ttlcache keeps values read from a store for a short, fixed time,
// for the reads on every call's path (access keys, identities, instances).
// This process's own writes drop what they change at once (Forget, Clear);
// another replica's writes show when the entry's time is up.
//
// A read that missed and overlapped a Forget or Clear must not put back
// what the write just made stale: Get hands out a generation that Put
// checks.
package ttlcache

import (
	"sync"
	"time"
)

// Cache maps keys to values, each good for the cache's TTL.
type Cache[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu  sync.Mutex
	gen uint64 // counts Forget and Clear calls
	m   map[K]entry[V]
}

type entry[V any] struct {
	v  V
	at time.Time
}

// New returns a cache whose entries are good for ttl; when it holds max
// entries, the next Put starts it over.
func New[K comparable, V any](ttl time.Duration, max int) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, max: max, m: make(map[K]entry[V])}
}

// Get returns the value for k if it was read less than the TTL before now.
// On a miss, pass gen to Put with what was read.
func (c *Cache[K, V]) Get(k K, now time.Time) (v V, ok bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if ok && now.Sub(e.at) < c.ttl {
		return e.v, true, c.gen
	}
	return v, false, c.gen
}

// Put stores v for k as read at now, unless a Forget or Clear came since
// the Get that returned gen.
func (c *Cache[K, V]) Put(k K, v V, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = entry[V]{v: v, at: now}
}

// Forget drops k. Reads that overlapped it (of any key) are not cached.
func (c *Cache[K, V]) Forget(k K) {
	c.mu.Lock()
	c.gen++
	delete(c.m, k)
	c.mu.Unlock()
}

// Clear drops every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	c.gen++
	clear(c.m)
	c.mu.Unlock()
}
