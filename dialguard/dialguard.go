// Package dialguard decides whether an Instance Connect Endpoint may open a
// TCP connection to a target, and dials only the targets it allows.
//
// An endpoint sits inside a private network with a leg in places its
// clients must never reach: its own loopback, the cloud metadata service,
// the endpoint host itself. Policy.Check is the rule; Dialer applies it
// before dialling and again on the socket's own address just before the
// connect, so that no later change of code path can slip a refused address
// through.
package dialguard

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-dev/postern"
)

// DefaultPorts returns the ports an endpoint tunnels to unless it is
// configured otherwise: SSH and RDP, as AWS's endpoints do.
func DefaultPorts() []uint16 { return []uint16{22, 3389} }

// Policy says which targets an endpoint may dial.
type Policy struct {
	// VPCCIDRs are the address ranges of the endpoint's VPC. A target must
	// lie inside one of them; with none, nothing may be dialled.
	VPCCIDRs []netip.Prefix
	// Ports are the target ports allowed. Empty means DefaultPorts.
	Ports []uint16
	// OwnAddrs are the endpoint host's own addresses, never a target (see
	// InterfaceAddrs).
	OwnAddrs []netip.Addr
}

// Special ranges that no VPC CIDR can make dialable. Loopback, link-local,
// multicast and unspecified addresses are recognised by netip itself.
var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")     // "this host on this network" (RFC 791); Linux treats it as local
	reservedV4  = netip.MustParsePrefix("240.0.0.0/4")   // class E, reserved; includes 255.255.255.255
	awsServices = netip.MustParsePrefix("fd00:ec2::/32") // AWS's IPv6 metadata, DNS and time services
	broadcastV4 = netip.MustParseAddr("255.255.255.255")
	metadataV4  = netip.MustParseAddr("169.254.169.254")
)

// IPv6 ranges that carry an IPv4 address which a translator or tunnel on
// the path may deliver to. ::ffff:0:0/96 (IPv4-mapped) is handled by Unmap.
var embeddingPrefixes = []struct {
	prefix netip.Prefix
	offset int // byte offset of the IPv4 address in the IPv6 address
	name   string
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12, "NAT64"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), 12, "local NAT64"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), 12, "IPv4-translated"},
	{netip.MustParsePrefix("::/96"), 12, "IPv4-compatible"},
	{netip.MustParsePrefix("2002::/16"), 2, "6to4"},
}

// Check reports whether the endpoint may dial addr:port. A refusal is a
// *postern.Error of kind KindInvalid (the target is malformed) or KindDenied
// (the target is well formed but not allowed), with a message fit to show
// the client.
//
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4
// address it maps to, and an IPv6 address that embeds an IPv4 address
// (NAT64, 6to4, IPv4-compatible) is refused when the embedded address would
// be.
func (p Policy) Check(addr netip.Addr, port uint16) error {
	if !addr.IsValid() {
		return postern.Invalidf("a target IP address is required")
	}
	if addr.Zone() != "" {
		return postern.Invalidf("target address %s carries an interface zone; scoped addresses are not tunnelled", addr)
	}
	if port == 0 {
		return postern.Invalidf("target port 0 is not a valid port")
	}
	a := addr.Unmap()
	shown := addr.String()
	if a != addr {
		shown = fmt.Sprintf("%s (IPv4 %s)", addr, a)
	}
	if why := special(a); why != "" {
		return postern.Errorf(postern.KindDenied, "target %s is %s; the endpoint never tunnels there", shown, why)
	}
	if p.own(a) {
		return postern.Errorf(postern.KindDenied, "target %s is an address of the endpoint itself", shown)
	}
	for _, e := range embeddingPrefixes {
		if !e.prefix.Contains(a) {
			continue
		}
		b := a.As16()
		v4 := netip.AddrFrom4([4]byte(b[e.offset : e.offset+4]))
		if why := special(v4); why != "" {
			return postern.Errorf(postern.KindDenied, "target %s is a %s address for %s, which is %s; the endpoint never tunnels there", shown, e.name, v4, why)
		}
		if p.own(v4) {
			return postern.Errorf(postern.KindDenied, "target %s is a %s address for %s, an address of the endpoint itself", shown, e.name, v4)
		}
	}
	if err := p.checkVPC(a, shown); err != nil {
		return err
	}
	ports := p.Ports
	if len(ports) == 0 {
		ports = DefaultPorts()
	}
	if !slices.Contains(ports, port) {
		return postern.Errorf(postern.KindDenied, "port %d is not allowed on this endpoint (allowed: %s)", port, portList(ports))
	}
	return nil
}

// special names the kind of address a is when no policy can allow it, or
// returns "".
func special(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "the unspecified address"
	case a.Is4() && thisNetwork.Contains(a):
		return "in 0.0.0.0/8, which means this host"
	case a.IsLoopback():
		return "a loopback address"
	case a == metadataV4:
		return "the instance metadata address (link-local)"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	case a.IsMulticast():
		return "a multicast address"
	case a == broadcastV4:
		return "the broadcast address"
	case a.Is4() && reservedV4.Contains(a):
		return "in the reserved range 240.0.0.0/4"
	case awsServices.Contains(a):
		return "an address of the cloud's instance services (metadata, DNS, time)"
	}
	return ""
}

func (p Policy) own(a netip.Addr) bool {
	for _, o := range p.OwnAddrs {
		if o.Unmap().WithZone("") == a {
			return true
		}
	}
	return false
}

// checkVPC requires a to lie inside a VPC CIDR and not to be the network
// or broadcast address of an IPv4 one.
func (p Policy) checkVPC(a netip.Addr, shown string) error {
	if len(p.VPCCIDRs) == 0 {
		return postern.Errorf(postern.KindDenied, "the endpoint has no VPC address range configured, so it can reach no target")
	}
	inside := false
	for _, c := range p.VPCCIDRs {
		c = c.Masked()
		if !c.Contains(a) {
			continue
		}
		inside = true
		if a.Is4() && c.Bits() <= 30 {
			if a == c.Addr() {
				return postern.Errorf(postern.KindDenied, "target %s is the network address of the VPC range %s", shown, c)
			}
			if a == lastAddr(c) {
				return postern.Errorf(postern.KindDenied, "target %s is the broadcast address of the VPC range %s", shown, c)
			}
		}
	}
	if !inside {
		return postern.Errorf(postern.KindDenied, "target %s is outside the endpoint's VPC", shown)
	}
	return nil
}

// lastAddr returns the highest address of an IPv4 prefix.
func lastAddr(c netip.Prefix) netip.Addr {
	b := c.Addr().As4()
	host := uint32(1)<<(32-c.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// InterfaceAddrs returns the addresses of this host's network interfaces,
// for Policy.OwnAddrs.
func InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
