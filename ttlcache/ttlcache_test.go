package ttlcache

import (
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	c := New[string, int](time.Second, 3)
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	get := func(k string, at time.Time) (int, bool) {
		v, ok, _ := c.Get(k, at)
		return v, ok
	}
	_, ok, gen := c.Get("a", t0)
	if ok {
		t.Fatal("an empty cache answered")
	}
	c.Put("a", 1, t0, gen)
	if v, ok := get("a", t0.Add(999*time.Millisecond)); !ok || v != 1 {
		t.Errorf("within the TTL: %d, %v", v, ok)
	}
	if _, ok := get("a", t0.Add(time.Second)); ok {
		t.Error("an entry was served at its TTL")
	}

	// A read that overlapped a Forget or a Clear is not cached.
	for name, invalidate := range map[string]func(){"Forget": func() { c.Forget("b") }, "Clear": c.Clear} {
		_, _, gen := c.Get("b", t0)
		invalidate()
		c.Put("b", 2, t0, gen)
		if _, ok := get("b", t0); ok {
			t.Errorf("a read that overlapped %s was cached", name)
		}
	}
	// Forget drops its key only; Clear drops all.
	_, _, gen = c.Get("x", t0)
	c.Put("a", 1, t0, gen)
	c.Put("b", 2, t0, gen)
	c.Forget("a")
	if _, ok := get("a", t0); ok {
		t.Error("Forget left its key")
	}
	if _, ok := get("b", t0); !ok {
		t.Error("Forget dropped another key")
	}
	c.Clear()
	if _, ok := get("b", t0); ok {
		t.Error("Clear left a key")
	}

	// Full: the next Put starts over.
	_, _, gen = c.Get("x", t0)
	for i, k := range []string{"a", "b", "c", "d"} {
		c.Put(k, i, t0, gen)
	}
	if _, ok := get("a", t0); ok {
		t.Error("a full cache kept growing")
	}
	if v, ok := get("d", t0); !ok || v != 3 {
		t.Errorf("the Put that started over: %d, %v", v, ok)
	}
}
