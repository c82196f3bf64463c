package main

import (
	"runtime/debug"
	"testing"
)

// Long-running commands set their garbage-collection target unless GOGC
// says otherwise.
func TestDefaultGCPercent(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	env := map[string]string{}
	m := &Main{Getenv: func(k string) string { return env[k] }}

	m.defaultGCPercent(serverGCPercent)
	if got := debug.SetGCPercent(100); got != serverGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, serverGCPercent)
	}
	env["GOGC"] = "50"
	m.defaultGCPercent(serverGCPercent)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=50: the server changed the GC percent to %d; the runtime's own reading of GOGC must stand", got)
	}
}
