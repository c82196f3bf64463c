package authkeys

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// Timeout bounds the whole helper run: sshd waits on it for every login
// attempt.
const Timeout = 4 * time.Second

// Watchdog ends the process with status 0 once Timeout has passed, with
// nothing more printed, so that sshd falls back to its other methods
// rather than wait (a connect to an agent whose backlog is full, for one,
// blocks without a bound). The returned function stops it.
func Watchdog() (stop func()) {
	t := time.AfterFunc(Timeout, func() { os.Exit(0) })
	return func() { t.Stop() }
}

// SyslogTag is the tag of the helper's authpriv log lines.
const SyslogTag = "postern-authorized-keys"

// syslogSockets are where a local syslog daemon (journald, rsyslog)
// receives datagrams, tried in order.
var syslogSockets = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

// authprivInfo is the priority of the helper's lines: facility authpriv
// (10), severity info (6).
const authprivInfo = 10<<3 | 6

// Syslog returns a logger to authpriv and a function that closes it; both
// do nothing when there is no syslog.
func Syslog() (logf func(format string, a ...any), closeLog func()) {
	return syslogTo(syslogSockets, SyslogTag)
}

// syslogTo logs to the first of sockets that takes a connection, each
// line as a local syslog daemon reads it: "<PRI>Mmm dd hh:mm:ss TAG[PID]:
// MESSAGE" (RFC 3164), one datagram per line.
func syslogTo(sockets []string, tag string) (logf func(format string, a ...any), closeLog func()) {
	for _, path := range sockets {
		c, err := dialUnix(syscall.SOCK_DGRAM, path, time.Second)
		if err != nil {
			continue
		}
		pid := os.Getpid()
		logf = func(format string, a ...any) {
			// A line break would let a logged value forge a line.
			msg := strings.NewReplacer("\n", " ", "\r", " ").Replace(fmt.Sprintf(format, a...))
			fmt.Fprintf(c, "<%d>%s %s[%d]: %s", authprivInfo, time.Now().Format(time.Stamp), tag, pid, msg)
		}
		return logf, func() { c.Close() }
	}
	return func(string, ...any) {}, func() {}
}

// Print is the helper's whole run: it prints to stdout the valid pushed
// keys of user (and, when not empty, fingerprint) and logs what it
// accepted and refused. On any doubt it prints nothing; it never fails,
// so that sshd simply falls back to its other methods.
func Print(stdout io.Writer, logf func(format string, a ...any), configPath, user, fingerprint string, now time.Time, timeout time.Duration) {
	cfg, err := ReadConfig(configPath)
	if err != nil {
		logf("no keys for %s: cannot read %s: %v", user, configPath, err)
		return
	}
	keys, rejected, err := AuthorizedKeys(cfg, user, fingerprint, now, timeout)
	if err != nil {
		logf("no keys for %s: %v", user, err)
		return
	}
	for _, r := range rejected {
		logf("refused a key record for %s: %s", user, r.Reason)
	}
	for _, k := range keys {
		fmt.Fprintln(stdout, k.Line)
		logf("accepted key %s for %s on %s (request %s, pushed by %s, expires %s)", k.Record.Fingerprint, user,
			k.Record.InstanceID, k.Record.RequestID, k.Record.Caller, k.Record.ExpiresAt.UTC().Format(time.RFC3339))
	}
}
