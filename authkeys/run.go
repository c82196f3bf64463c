package authkeys

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// Timeout bounds the helper's exchange with the agent, connect included.
const Timeout = 4 * time.Second

// watchdogAfter is when the watchdog ends a helper run that is still
// going: past Timeout, so that a silent agent is logged as one, and
// inside the 5 seconds a login may wait.
const watchdogAfter = Timeout + 500*time.Millisecond

// Watchdog ends the process with status 0 once watchdogAfter has passed,
// with nothing more printed, so that sshd falls back to its other methods
// rather than wait (for a syslog daemon that stopped reading, say). The
// returned function stops it.
func Watchdog() (stop func()) {
	t := time.AfterFunc(watchdogAfter, func() { os.Exit(0) })
	return func() { t.Stop() }
}

// SyslogTag is the tag of the helper's authpriv log lines.
const SyslogTag = "postern-authorized-keys"

// syslogSockets are where a local syslog daemon (journald, rsyslog,
// syslog-ng) listens, tried in order.
var syslogSockets = []string{"/dev/log", "/var/run/syslog", "/var/run/log"}

// syslogTimeout bounds the sending of one log line.
const syslogTimeout = 500 * time.Millisecond

// lineBreaks folds line breaks in logged values, which could otherwise
// forge a line.
var lineBreaks = strings.NewReplacer("\n", " ", "\r", " ")

// authprivInfo is the priority of the helper's lines: facility authpriv
// (10), severity info (6).
const authprivInfo = 10<<3 | 6

// Syslog returns a logger to authpriv and a function that closes it; both
// do nothing when there is no syslog.
func Syslog() (logf func(format string, a ...any), closeLog func()) {
	return syslogTo(syslogSockets, SyslogTag)
}

// syslogTo logs to the first of sockets that takes a connection, as a
// datagram socket or else a stream one, each line as a local syslog
// daemon reads it: "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE\n" (RFC 3164).
func syslogTo(sockets []string, tag string) (logf func(format string, a ...any), closeLog func()) {
	for _, path := range sockets {
		for _, typ := range []int{syscall.SOCK_DGRAM, syscall.SOCK_STREAM} {
			c, err := dialUnix(typ, path, time.Now().Add(syslogTimeout))
			if err != nil {
				continue
			}
			pid := os.Getpid()
			logf = func(format string, a ...any) {
				msg := lineBreaks.Replace(fmt.Sprintf(format, a...))
				c.deadline = time.Now().Add(syslogTimeout)
				fmt.Fprintf(c, "<%d>%s %s[%d]: %s\n", authprivInfo, time.Now().Format(time.Stamp), tag, pid, msg)
			}
			return logf, func() { c.Close() }
		}
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
		// Logged first: a run cut short never hands sshd a key whose line was not sent.
		logf("accepted key %s for %s on %s (request %s, pushed by %s, expires %s)", k.Record.Fingerprint, user,
			k.Record.InstanceID, k.Record.RequestID, k.Record.Caller, k.Record.ExpiresAt.UTC().Format(time.RFC3339))
		fmt.Fprintln(stdout, k.Line)
	}
}
