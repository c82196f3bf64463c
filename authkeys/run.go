package authkeys

import (
	"fmt"
	"io"
	"log/syslog"
	"time"
)

// Timeout bounds the whole helper run: sshd waits on it for every login
// attempt.
const Timeout = 4 * time.Second

// SyslogTag is the tag of the helper's authpriv log lines.
const SyslogTag = "postern-authorized-keys"

// Syslog returns a logger to authpriv and a function that closes it; both
// do nothing when there is no syslog.
func Syslog() (logf func(format string, a ...any), closeLog func()) {
	w, _ := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, SyslogTag)
	if w == nil {
		return func(string, ...any) {}, func() {}
	}
	return func(format string, a ...any) { _ = w.Info(fmt.Sprintf(format, a...)) }, func() { w.Close() }
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
