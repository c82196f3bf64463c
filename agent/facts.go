package agent

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/postern-dev/postern/agentproto"
)

// Facts gathers what the agent reports about its host. Fields are
// variables so that tests (and hosts with unusual layouts) can point them
// elsewhere.
type Facts struct {
	SSHDir    string // where ssh_host_*_key.pub live; "/etc/ssh"
	OSRelease string // "/etc/os-release"
	SSHPort   int    // sshd's port; 22
	// Addrs returns the host's addresses; nil means all interfaces.
	Addrs func() ([]netip.Addr, error)
	// PrivateIPs, when set, is reported as is (e.g. a loopback-only demo
	// host), instead of classifying Addrs.
	PrivateIPs []string
}

// Collect builds a report from the host as it is now.
func (f Facts) Collect() agentproto.Report {
	r := agentproto.Report{Platform: "Linux/UNIX", SSHPort: f.SSHPort}
	r.Hostname, _ = os.Hostname()
	r.OS = prettyName(f.OSRelease)
	addrs := f.Addrs
	if addrs == nil {
		addrs = interfaceAddrs
	}
	if len(f.PrivateIPs) > 0 {
		r.PrivateIPs = f.PrivateIPs
	} else if as, err := addrs(); err == nil {
		r.PrivateIPs, r.PublicIPs = classify(as)
	}
	r.HostKeys = hostKeys(f.SSHDir)
	return r
}

func interfaceAddrs() ([]netip.Addr, error) {
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range ifaddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

// cgnat is RFC 6598 shared address space: not reachable from the internet.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// classify splits addresses into private and public ones, dropping
// loopback, link-local and multicast addresses. IPv4 comes first.
func classify(addrs []netip.Addr) (private, public []string) {
	sort.SliceStable(addrs, func(i, j int) bool { return addrs[i].Is4() && !addrs[j].Is4() })
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case a.IsLoopback(), a.IsLinkLocalUnicast(), a.IsMulticast(), a.IsUnspecified():
		case a.IsPrivate(), cgnat.Contains(a):
			private = append(private, a.String())
		default:
			public = append(public, a.String())
		}
	}
	return private, public
}

// hostKeys reads sshd's public host keys as "type base64" lines.
func hostKeys(dir string) []string {
	paths, _ := filepath.Glob(filepath.Join(dir, "ssh_host_*_key.pub"))
	sort.Strings(paths)
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			out = append(out, f[0]+" "+f[1])
		}
	}
	return out
}

func prettyName(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return ""
}
