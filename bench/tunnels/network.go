package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// The bench's network, built fresh for each run and removed at the end:
//
//	root ns: the bench (clients),          edge ns pbt-edge-ID:                   private ns pbt-priv-ID:
//	postern server on 10.88.N.1  ── veth ──  10.88.N.2  postern endpoint run :8443,  10.87.N.1 ── veth ── 10.87.N.2  the target :5201
//	                                                    sshd :22 (the bastion),
//	                                                    websockify :8080
//
// The edge forwards between its two links, so direct TCP from the root
// namespace to the target crosses the same two veth pairs a tunnel
// does; the private namespace has a route back to the root's address and
// nowhere else. The VPC is 10.87.0.0/16, the subnet 10.87.N.0/24: the
// target is a private, non-loopback address the endpoint's dial guard
// lets through.
type network struct {
	id                 string
	n                  int
	edgeNS, privNS     string
	rootLink           string // the root side of the root–edge pair
	rootIP, edgeIP     string // 10.88.N.1, 10.88.N.2
	edgeInIP, targetIP string // 10.87.N.1, 10.87.N.2
	vpcCIDR, subnet    string
	made               []string // namespaces created, for teardown
}

const (
	netPrivate = 87 // second octet of the VPC
	netRoot    = 88 // second octet of the root–edge link
)

// newNetwork builds the namespaces and links. On error what was made is
// removed again.
func newNetwork() (_ *network, err error) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(b)
	n, err := freeNet(netPrivate, netRoot)
	if err != nil {
		return nil, err
	}
	addr := func(x, host int) string { return fmt.Sprintf("10.%d.%d.%d", x, n, host) }
	w := &network{id: id, n: n, edgeNS: "pbt-edge-" + id, privNS: "pbt-priv-" + id, rootLink: "pbr" + id,
		rootIP: addr(netRoot, 1), edgeIP: addr(netRoot, 2), edgeInIP: addr(netPrivate, 1), targetIP: addr(netPrivate, 2),
		vpcCIDR: fmt.Sprintf("10.%d.0.0/16", netPrivate), subnet: fmt.Sprintf("10.%d.%d.0/24", netPrivate, n)}
	defer func() {
		if err != nil {
			w.teardown()
		}
	}()
	for _, ns := range []string{w.edgeNS, w.privNS} {
		if err := ip("netns", "add", ns); err != nil {
			return nil, err
		}
		w.made = append(w.made, ns)
		if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
			return nil, err
		}
	}
	// link makes a veth pair a (in nsA, "" for root) ─ b (in nsB).
	link := func(a, nsA, addrA, b, nsB, addrB string) error {
		if err := ip("link", "add", a, "type", "veth", "peer", "name", b); err != nil {
			return err
		}
		for _, end := range []struct{ dev, ns, addr string }{{a, nsA, addrA}, {b, nsB, addrB}} {
			var pre []string
			if end.ns != "" {
				if err := ip("link", "set", end.dev, "netns", end.ns); err != nil {
					return err
				}
				pre = []string{"-n", end.ns}
			}
			if err := ip(append(pre, "addr", "add", end.addr+"/24", "dev", end.dev)...); err != nil {
				return err
			}
			if err := ip(append(pre, "link", "set", end.dev, "up")...); err != nil {
				return err
			}
		}
		return nil
	}
	if err := link(w.rootLink, "", w.rootIP, "pbe"+id, w.edgeNS, w.edgeIP); err != nil {
		return nil, err
	}
	if err := link("pbx"+id, w.edgeNS, w.edgeInIP, "pbp"+id, w.privNS, w.targetIP); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"netns", "exec", w.edgeNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
		{"-n", w.privNS, "route", "add", w.rootIP + "/32", "via", w.edgeInIP},
		{"route", "add", w.subnet, "via", w.edgeIP},
	} {
		if err := ip(args...); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// in returns the argv that runs args in namespace ns.
func in(ns string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, args...)
}

// teardown kills what still runs in the namespaces and deletes them, and
// with them the links and routes.
func (w *network) teardown() {
	for _, ns := range w.made {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ip("netns", "del", ns); err != nil {
			progress("teardown: %v", err)
		}
	}
	// Gone with the edge namespace, unless it never got there.
	_ = exec.Command("ip", "link", "del", w.rootLink).Run()
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeNet returns an N such that 10.X.N.0/24 is used by no interface or
// route of this machine for every X in seconds.
func freeNet(seconds ...int) (int, error) {
	addrs, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return 0, fmt.Errorf("ip addr show: %w", err)
	}
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return 0, fmt.Errorf("ip route show: %w", err)
	}
	for range 1000 {
		n := 1 + mrand.IntN(254)
		free := true
		for _, x := range seconds {
			prefix := fmt.Sprintf("10.%d.%d.", x, n)
			free = free && !strings.Contains(string(addrs), prefix) && !strings.Contains(string(routes), prefix)
		}
		if free {
			return n, nil
		}
	}
	return 0, errors.New("no free /24 in 10.87.0.0/16 and 10.88.0.0/16")
}
