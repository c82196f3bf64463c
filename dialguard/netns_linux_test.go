//go:build linux

package dialguard_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// world is two network namespaces of our own joined by a veth pair:
//
//	near (the endpoint) vA 10.250.0.1/24 ──── vB 10.250.0.3/24 far
//
// near has a permanent neighbour entry that sends 10.250.0.2 to vB's MAC.
// far does not own 10.250.0.2 and does not forward, so it drops those
// packets without a word: a connect to 10.250.0.2 never gets a SYN-ACK, an
// RST or an ICMP error. Nothing leaves the two namespaces.
type world struct {
	near, far string
	nearAddr  netip.Addr // the endpoint's own address
	target    netip.Addr // far's address: answers (or refuses) connections
	blackhole netip.Addr // nobody: packets vanish
}

func newWorld(t *testing.T) *world {
	t.Helper()
	// Skipping would hide the test in CI, which runs as root with
	// iproute2 (.ci/run installs it): fail instead.
	if os.Geteuid() != 0 {
		t.Fatal("network-namespace tests need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("iproute2's ip is not installed (.ci/run installs it)")
	}
	var b [4]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	w := &world{
		near:      "pgdg-near-" + id,
		far:       "pgdg-far-" + id,
		nearAddr:  netip.MustParseAddr("10.250.0.1"),
		target:    netip.MustParseAddr("10.250.0.3"),
		blackhole: netip.MustParseAddr("10.250.0.2"),
	}
	for _, ns := range []string{w.near, w.far} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("cannot create a network namespace: %v: %s", err, out)
		}
		t.Cleanup(func() { ip(t, "netns", "del", ns) })
	}
	const farMAC = "02:00:00:00:00:02"
	ip(t, "-n", w.near, "link", "set", "lo", "up")
	ip(t, "-n", w.far, "link", "set", "lo", "up")
	ip(t, "-n", w.near, "link", "add", "vA", "type", "veth", "peer", "name", "vB", "netns", w.far)
	ip(t, "-n", w.far, "link", "set", "vB", "address", farMAC)
	ip(t, "-n", w.near, "addr", "add", w.nearAddr.String()+"/24", "dev", "vA")
	ip(t, "-n", w.far, "addr", "add", w.target.String()+"/24", "dev", "vB")
	ip(t, "-n", w.near, "link", "set", "vA", "up")
	ip(t, "-n", w.far, "link", "set", "vB", "up")
	ip(t, "-n", w.near, "neigh", "replace", w.blackhole.String(), "lladdr", farMAC, "dev", "vA", "nud", "permanent")
	return w
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// in runs f on an OS thread that has entered the named namespace, so that
// the sockets f creates live there. The thread is never unlocked: it exits
// with its goroutine instead of going back to the scheduler in the wrong
// namespace. f must not call t.Fatal; it reports through its own variables.
func in(t *testing.T, ns string, f func()) {
	t.Helper()
	fd, err := syscall.Open("/run/netns/"+ns, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", ns, err)
	}
	defer syscall.Close(fd)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
