package endpoint

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/postern-dev/postern/endpointproto"
)

// verifyNoLeaks fails t when goroutines started during the test outlive
// all its other cleanups. Call it first, so that its cleanup runs last.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func TestClientVanishesMidStream(t *testing.T) {
	verifyNoLeaks(t)
	h := start(t, options{settings: endpointproto.Settings{AllowedPorts: []int{22}}})
	c := h.mustOpen(echoIP, 22)
	roundTrip(t, c, "half a conversation")
	c.CloseNow() // no close frame: the client is simply gone
	rec := recv(t, h.srv.closed, "the close report")
	if rec.Cause != "client-lost" || rec.Code != 1006 || rec.BytesIn != 19 {
		t.Errorf("close report = %+v", rec)
	}
}

func TestRelayClientVanishesMidStream(t *testing.T) {
	verifyNoLeaks(t)
	h := start(t, options{mode: endpointproto.ModeRelay, settings: endpointproto.Settings{AllowedPorts: []int{22}}})
	h.srv.send(h.control, endpointproto.Control{Type: endpointproto.ControlDial, Dial: h.srv.newTunnel(echoIP, 22, "198.51.100.7")})
	r := recv(t, h.srv.relays, "the relay dial-back")
	roundTrip(t, r.conn, "relayed")
	r.conn.CloseNow()
	if rec := recv(t, h.srv.closed, "the close report"); rec.Cause != "client-lost" || rec.BytesOut != 7 {
		t.Errorf("close report = %+v", rec)
	}
}
