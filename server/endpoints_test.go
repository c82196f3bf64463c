package server

import (
	"testing"

	"github.com/postern-dev/postern/endpointproto"
)

// TestPickIsFair: tunnels spread evenly over an endpoint's processes
// connected here, whatever the map's iteration order does.
func TestPickIsFair(t *testing.T) {
	h := newEndpointHub()
	const ep = "eice-0123456789abcdef0"
	h.sessions[ep] = map[string]*endpointSession{
		"a": {endpointID: ep, process: "a", mode: endpointproto.ModeRelay},
		"b": {endpointID: ep, process: "b", mode: endpointproto.ModeRelay},
		"l": {endpointID: ep, process: "l", mode: endpointproto.ModeListen},
	}
	const n = 3000
	count := func(pick func(string) *endpointSession) map[string]int {
		got := map[string]int{}
		for range n {
			got[pick(ep).process]++
		}
		return got
	}
	// Each count is binomial; the bounds are over 10 standard deviations
	// away from the mean, so a fair pick never fails them.
	all := count(h.pick)
	for _, p := range []string{"a", "b", "l"} {
		if all[p] < n/3-300 || all[p] > n/3+300 {
			t.Errorf("pick chose %v of %d; want about %d each", all, n, n/3)
		}
	}
	relay := count(h.pickRelay)
	if relay["l"] != 0 || relay["a"] < n/2-300 || relay["b"] < n/2-300 {
		t.Errorf("pickRelay chose %v of %d; want about %d for each relay process and none for the listener", relay, n, n/2)
	}
	if h.pick("eice-0fffffffffffffff0") != nil || h.pickRelay("eice-0fffffffffffffff0") != nil {
		t.Error("a pick for an endpoint with no process connected here returned one")
	}
}
