package dialguard_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/dialguard"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// vpc is an endpoint in a dual-stack VPC with one address of its own.
var vpc = dialguard.Policy{
	VPCCIDRs: prefixes("10.0.0.0/16", "2600:1f18:1234:5600::/56"),
	OwnAddrs: addrs("10.0.0.10", "2600:1f18:1234:5600::10"),
}

// anywhere is a policy whose CIDRs cover every address: the refusals that
// do not depend on the VPC must hold even then.
var anywhere = dialguard.Policy{
	VPCCIDRs: prefixes("0.0.0.0/0", "::/0"),
	OwnAddrs: addrs("::ffff:192.0.2.7"), // own addresses may be listed mapped, too
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		name   string
		policy dialguard.Policy
		addr   string // "" is the zero netip.Addr
		port   uint16
		kind   postern.Kind
		want   string // in the message
	}{
		{"no address", vpc, "", 22, postern.KindInvalid, "address is required"},
		{"zone", vpc, "fe80::1%eth0", 22, postern.KindInvalid, "zone"},
		{"zone on a VPC address", vpc, "2600:1f18:1234:5600::5%eth0", 22, postern.KindInvalid, "zone"},
		{"port 0", vpc, "10.0.0.5", 0, postern.KindInvalid, "port 0"},

		{"loopback", anywhere, "127.0.0.1", 22, postern.KindDenied, "loopback"},
		{"loopback /8", anywhere, "127.1.2.3", 22, postern.KindDenied, "loopback"},
		{"loopback v6", anywhere, "::1", 22, postern.KindDenied, "loopback"},
		{"mapped loopback", anywhere, "::ffff:127.0.0.1", 22, postern.KindDenied, "(IPv4 127.0.0.1) is a loopback"},
		{"metadata", anywhere, "169.254.169.254", 80, postern.KindDenied, "metadata"},
		{"mapped metadata", anywhere, "::ffff:169.254.169.254", 22, postern.KindDenied, "metadata"},
		{"link-local v4", anywhere, "169.254.10.20", 22, postern.KindDenied, "link-local"},
		{"link-local v6", anywhere, "fe80::1", 22, postern.KindDenied, "link-local"},
		{"aws v6 metadata", anywhere, "fd00:ec2::254", 22, postern.KindDenied, "instance services"},
		{"multicast v4", anywhere, "224.0.0.1", 22, postern.KindDenied, "multicast"},
		{"multicast v4 admin", anywhere, "239.1.2.3", 22, postern.KindDenied, "multicast"},
		{"multicast v6 link", anywhere, "ff02::1", 22, postern.KindDenied, "multicast"},
		{"multicast v6 site", anywhere, "ff05::1:3", 22, postern.KindDenied, "multicast"},
		{"mapped multicast", anywhere, "::ffff:224.0.0.251", 22, postern.KindDenied, "multicast"},
		{"unspecified v4", anywhere, "0.0.0.0", 22, postern.KindDenied, "unspecified"},
		{"unspecified v6", anywhere, "::", 22, postern.KindDenied, "unspecified"},
		{"this network", anywhere, "0.1.2.3", 22, postern.KindDenied, "0.0.0.0/8"},
		{"broadcast", anywhere, "255.255.255.255", 22, postern.KindDenied, "broadcast"},
		{"mapped broadcast", anywhere, "::ffff:255.255.255.255", 22, postern.KindDenied, "broadcast"},
		{"class E", anywhere, "240.0.0.1", 22, postern.KindDenied, "240.0.0.0/4"},

		{"NAT64 loopback", anywhere, "64:ff9b::7f00:1", 22, postern.KindDenied, "NAT64 address for 127.0.0.1, which is a loopback"},
		{"NAT64 metadata", anywhere, "64:ff9b::a9fe:a9fe", 22, postern.KindDenied, "169.254.169.254, which is the instance metadata"},
		{"local NAT64 loopback", anywhere, "64:ff9b:1::7f00:1", 22, postern.KindDenied, "local NAT64"},
		{"6to4 loopback", anywhere, "2002:7f00:1::", 22, postern.KindDenied, "6to4 address for 127.0.0.1"},
		{"IPv4-compatible loopback", anywhere, "::127.0.0.1", 22, postern.KindDenied, "IPv4-compatible address for 127.0.0.1"},
		{"IPv4-translated loopback", anywhere, "::ffff:0:7f00:1", 22, postern.KindDenied, "IPv4-translated address for 127.0.0.1"},
		{"NAT64 own", anywhere, "64:ff9b::c000:207", 22, postern.KindDenied, "192.0.2.7, an address of the endpoint"},

		{"own v4", vpc, "10.0.0.10", 22, postern.KindDenied, "endpoint itself"},
		{"own v4 mapped", vpc, "::ffff:10.0.0.10", 22, postern.KindDenied, "endpoint itself"},
		{"own v6", vpc, "2600:1f18:1234:5600::10", 22, postern.KindDenied, "endpoint itself"},
		{"own listed mapped", anywhere, "192.0.2.7", 22, postern.KindDenied, "endpoint itself"},

		{"outside v4", vpc, "10.1.0.1", 22, postern.KindDenied, "outside the endpoint's VPC"},
		{"public v4", vpc, "8.8.8.8", 22, postern.KindDenied, "outside"},
		{"mapped outside", vpc, "::ffff:192.168.1.1", 22, postern.KindDenied, "outside"},
		{"outside v6", vpc, "2600:1f18:1234:5700::1", 22, postern.KindDenied, "outside"},
		{"VPC network address", vpc, "10.0.0.0", 22, postern.KindDenied, "network address of the VPC range 10.0.0.0/16"},
		{"VPC broadcast", vpc, "10.0.255.255", 22, postern.KindDenied, "broadcast address of the VPC range 10.0.0.0/16"},
		{"no VPC", dialguard.Policy{}, "10.0.0.5", 22, postern.KindDenied, "no VPC address range"},

		{"port", vpc, "10.0.0.5", 80, postern.KindDenied, "port 80 is not allowed on this endpoint (allowed: 22, 3389)"},
		{"port near RDP", vpc, "10.0.0.5", 3390, postern.KindDenied, "port 3390"},
		{"port not configured", dialguard.Policy{VPCCIDRs: vpc.VPCCIDRs, Ports: []uint16{443}}, "10.0.0.5", 22, postern.KindDenied, "(allowed: 443)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			err := tt.policy.Check(a, tt.port)
			var pe *postern.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Check(%s, %d) = %v, want a *postern.Error", tt.addr, tt.port, err)
			}
			if pe.Kind != tt.kind {
				t.Errorf("kind = %v, want %v (%v)", pe.Kind, tt.kind, err)
			}
			if !strings.Contains(pe.Message, tt.want) {
				t.Errorf("message %q does not contain %q", pe.Message, tt.want)
			}
		})
	}
}

func TestCheckAllows(t *testing.T) {
	tests := []struct {
		name   string
		policy dialguard.Policy
		addr   string
		port   uint16
	}{
		{"ssh", vpc, "10.0.0.5", 22},
		{"rdp", vpc, "10.0.1.200", 3389},
		{"first host", vpc, "10.0.0.1", 22},
		{"last host", vpc, "10.0.255.254", 22},
		{"mapped", vpc, "::ffff:10.0.0.5", 22},
		{"v6", vpc, "2600:1f18:1234:5600::abcd", 22},
		{"configured port", dialguard.Policy{VPCCIDRs: vpc.VPCCIDRs, Ports: []uint16{22, 443}}, "10.0.0.5", 443},
		{"host route", dialguard.Policy{VPCCIDRs: prefixes("10.9.9.9/32")}, "10.9.9.9", 22},
		{"point to point", dialguard.Policy{VPCCIDRs: prefixes("10.9.9.8/31")}, "10.9.9.8", 22},
		{"public VPC range", anywhere, "203.0.113.9", 22},
		{"NAT64 of an ordinary address", anywhere, "64:ff9b::a00:5", 22},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.policy.Check(netip.MustParseAddr(tt.addr), tt.port); err != nil {
				t.Errorf("Check(%s, %d) = %v, want nil", tt.addr, tt.port, err)
			}
		})
	}
}

func TestDefaultPorts(t *testing.T) {
	p := dialguard.DefaultPorts()
	if len(p) != 2 || p[0] != 22 || p[1] != 3389 {
		t.Fatalf("DefaultPorts() = %v", p)
	}
	p[0] = 1 // callers own the slice they get
	if dialguard.DefaultPorts()[0] != 22 {
		t.Fatal("DefaultPorts shares its slice")
	}
}

func TestInterfaceAddrs(t *testing.T) {
	got, err := dialguard.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if a.Is4In6() || a.Zone() != "" {
			t.Errorf("InterfaceAddrs gave %s, want plain addresses", a)
		}
	}
}
