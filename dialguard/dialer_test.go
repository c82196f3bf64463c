package dialguard_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/dialguard"
)

// TestDialRefusesBeforeConnecting proves a refused target is never
// connected to, even by a policy whose CIDRs wrongly include it.
func TestDialRefusesBeforeConnecting(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	d := dialguard.Dialer{Policy: dialguard.Policy{
		VPCCIDRs: prefixes("127.0.0.0/8", "::/0"),
		Ports:    []uint16{port},
	}}
	for _, target := range []string{"127.0.0.1", "::ffff:127.0.0.1", "::1", "0.0.0.0", "::"} {
		c, err := d.DialContext(context.Background(), netip.MustParseAddr(target), port)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded", target)
		}
		if !postern.IsKind(err, postern.KindDenied) {
			t.Errorf("dial %s: %v, want a denial", target, err)
		}
	}
	// Had any dial connected, its connection would wait in the accept queue.
	ln.(*net.TCPListener).SetDeadline(time.Now())
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("a refused dial reached the listener")
	}
}

func TestDialConnects(t *testing.T) {
	w := newWorld(t)
	var ln net.Listener
	var err error
	in(t, w.far, func() { ln, err = net.Listen("tcp4", w.target.String()+":22") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	d := dialguard.Dialer{Timeout: 5 * time.Second, Policy: dialguard.Policy{
		VPCCIDRs: prefixes("10.250.0.0/24"),
		OwnAddrs: []netip.Addr{w.nearAddr},
	}}
	var c *net.TCPConn
	// An IPv4-mapped target is dialled as the IPv4 address it maps to.
	target := netip.AddrFrom16(w.target.As16())
	in(t, w.near, func() { c, err = d.DialContext(context.Background(), target, 22) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != w.target.String()+":22" {
		t.Errorf("connected to %s", got)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

func TestDialTargetNeverAnswers(t *testing.T) {
	w := newWorld(t)
	const timeout = 300 * time.Millisecond
	d := dialguard.Dialer{Timeout: timeout, Policy: dialguard.Policy{VPCCIDRs: prefixes("10.250.0.0/24")}}
	var err error
	var elapsed time.Duration
	in(t, w.near, func() {
		start := time.Now()
		var c *net.TCPConn
		c, err = d.DialContext(context.Background(), w.blackhole, 22)
		elapsed = time.Since(start)
		if c != nil {
			c.Close()
		}
	})
	if err == nil {
		t.Fatal("dial to a blackholed address succeeded")
	}
	var pe *postern.Error
	if !errors.As(err, &pe) || pe.Kind != postern.KindUnavailable {
		t.Fatalf("err = %v, want a KindUnavailable *postern.Error", err)
	}
	if want := "target 10.250.0.2:22 did not answer within 300ms"; pe.Message != want {
		t.Errorf("message %q, want %q", pe.Message, want)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err) {
		t.Errorf("err = %v does not wrap the timeout", err)
	}
	// The bound is the point of the test; the slack is for a loaded machine.
	if elapsed > timeout+5*time.Second {
		t.Errorf("dial took %v with a %v timeout", elapsed, timeout)
	}
}

func TestDialAbandoned(t *testing.T) {
	w := newWorld(t)
	d := dialguard.Dialer{Timeout: time.Minute, Policy: dialguard.Policy{VPCCIDRs: prefixes("10.250.0.0/24")}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var err error
	in(t, w.near, func() {
		var c *net.TCPConn
		if c, err = d.DialContext(ctx, w.blackhole, 3389); c != nil {
			c.Close()
		}
	})
	if !postern.IsKind(err, postern.KindUnavailable) || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("err = %v, want an abandoned dial", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v does not wrap the context's error", err)
	}
}

func TestDialRefused(t *testing.T) {
	w := newWorld(t)
	d := dialguard.Dialer{Timeout: 5 * time.Second, Policy: dialguard.Policy{VPCCIDRs: prefixes("10.250.0.0/24")}}
	var err error
	in(t, w.near, func() {
		var c *net.TCPConn
		if c, err = d.DialContext(context.Background(), w.target, 3389); c != nil {
			c.Close()
		}
	})
	var pe *postern.Error
	if !errors.As(err, &pe) || pe.Kind != postern.KindUnavailable {
		t.Fatalf("err = %v, want a KindUnavailable *postern.Error", err)
	}
	if want := "target 10.250.0.3:3389 refused the connection (nothing listens on port 3389)"; pe.Message != want {
		t.Errorf("message %q, want %q", pe.Message, want)
	}
}

func TestDialOwnAddress(t *testing.T) {
	own := netip.MustParseAddr("10.250.0.1")
	d := dialguard.Dialer{Policy: dialguard.Policy{VPCCIDRs: prefixes("10.250.0.0/24"), OwnAddrs: []netip.Addr{own}}}
	c, err := d.DialContext(context.Background(), own, 22)
	if c != nil {
		c.Close()
	}
	if !postern.IsKind(err, postern.KindDenied) || !strings.Contains(err.Error(), "endpoint itself") {
		t.Fatalf("err = %v, want a denial of the endpoint's own address", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
