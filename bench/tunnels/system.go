package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// ensureWebsockify installs Debian's websockify when it is missing: the
// comparison needs it, and a figure is never skipped in silence. It
// reports whether it installed it.
func ensureWebsockify(ctx context.Context) (bool, error) {
	if _, err := exec.LookPath("websockify"); err == nil {
		return false, nil
	}
	progress("websockify is not installed: apt-get install websockify")
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "-q", "websockify")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	out, err := install()
	if err != nil {
		// A machine that never fetched the package lists knows no
		// websockify yet.
		if uout, uerr := exec.CommandContext(ctx, "apt-get", "update", "-q").CombinedOutput(); uerr != nil {
			out = append(out, uout...)
		} else {
			out, err = install()
		}
	}
	if err != nil {
		return false, fmt.Errorf("websockify (Debian package websockify) is needed for the comparison and apt-get could not install it: %v\n%s",
			err, tail(string(out), 1500))
	}
	if _, err := exec.LookPath("websockify"); err != nil {
		return false, fmt.Errorf("apt-get installed websockify, but it is not on PATH: %w", err)
	}
	return true, nil
}

// packageVersion is an installed Debian package's version, or "".
func packageVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// raiseFileLimit makes RLIMIT_NOFILE at least n, soft and hard, for this
// process and the children it starts: each tunnel holds a socket at the
// client, two at the endpoint and one at the target. Raising the hard
// limit takes CAP_SYS_RESOURCE; without it the limit stays at the hard
// one, and raised is false. It returns the limit in force.
func raiseFileLimit(n uint64) (limit uint64, raised bool, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false, err
	}
	if lim.Cur >= n && lim.Max >= n {
		return lim.Cur, true, nil
	}
	want := syscall.Rlimit{Cur: max(n, lim.Cur), Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return want.Cur, true, nil
	} else if !errors.Is(err, syscall.EPERM) {
		return 0, false, fmt.Errorf("raise the open-files limit to %d: %w", n, err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false, fmt.Errorf("raise the open-files limit to %d: %w", lim.Max, err)
	}
	return lim.Cur, false, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
