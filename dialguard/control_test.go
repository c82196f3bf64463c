package dialguard

import (
	"net/netip"
	"testing"

	"github.com/postern-dev/postern"
)

// TestControlRechecks drives the hook that runs on the socket just before
// connect(2): whatever address reaches it is judged again.
func TestControlRechecks(t *testing.T) {
	d := &Dialer{Policy: Policy{
		VPCCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		OwnAddrs: []netip.Addr{netip.MustParseAddr("10.0.0.10")},
	}}
	tests := []struct {
		network, address string
		kind             postern.Kind // KindOther: allowed
	}{
		{"tcp4", "10.0.0.5:22", postern.KindOther},
		{"tcp6", "[::ffff:10.0.0.5]:3389", postern.KindOther},
		{"tcp4", "127.0.0.1:22", postern.KindDenied},
		{"tcp6", "[::ffff:127.0.0.1]:22", postern.KindDenied},
		{"tcp4", "169.254.169.254:22", postern.KindDenied},
		{"tcp4", "10.0.0.10:22", postern.KindDenied},
		{"tcp4", "10.0.0.5:80", postern.KindDenied},
		{"tcp4", "10.1.0.5:22", postern.KindDenied},
		{"udp4", "10.0.0.5:22", postern.KindInvalid},
		{"unix", "/run/sshd.sock", postern.KindInvalid},
		{"tcp4", "example.com:22", postern.KindInvalid},
	}
	for _, tt := range tests {
		err := d.control(tt.network, tt.address, nil)
		if got := postern.KindOf(err); err != nil && got != tt.kind || err == nil && tt.kind != postern.KindOther {
			t.Errorf("control(%s, %s) = %v, want kind %v", tt.network, tt.address, err, tt.kind)
		}
	}
}
