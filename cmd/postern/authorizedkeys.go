package main

import (
	"context"
	"fmt"
	"log/syslog"
	"time"

	"github.com/postern-dev/postern/agent"
)

// helperTimeout bounds the whole helper run: sshd waits on it for every
// login attempt.
const helperTimeout = 4 * time.Second

// runAuthorizedKeys is sshd's AuthorizedKeysCommand. It prints the valid
// pushed keys for the user and exits 0; on any doubt it prints nothing
// and still exits 0, so that sshd simply falls back to its other methods.
func runAuthorizedKeys(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("authorized-keys", "authorized-keys [--config FILE] USER [FINGERPRINT]",
		"# in sshd_config (postern agent install writes this):\n"+
			"AuthorizedKeysCommand /usr/local/libexec/postern authorized-keys %u %f\n"+
			"AuthorizedKeysCommandUser postern")
	config := fs.String("config", agent.DefaultHelperConfig, "the helper's pinned instance id, server key and agent socket")
	if err := fs.parse(args, true); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usagef("authorized-keys: want USER [FINGERPRINT]")
	}
	user, fingerprint := fs.Arg(0), fs.Arg(1)
	logw, _ := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "postern-authorized-keys")
	logf := func(format string, a ...any) {
		if logw != nil {
			logw.Info(fmt.Sprintf(format, a...))
		}
	}
	if logw != nil {
		defer logw.Close()
	}
	cfg, err := agent.ReadHelperConfig(*config)
	if err != nil {
		logf("no keys for %s: cannot read %s: %v", user, *config, err)
		return nil
	}
	keys, rejected, err := agent.AuthorizedKeys(cfg, user, fingerprint, time.Now(), helperTimeout)
	if err != nil {
		logf("no keys for %s: %v", user, err)
		return nil
	}
	for _, r := range rejected {
		logf("refused a key record for %s: %s", user, r.Reason)
	}
	for _, k := range keys {
		fmt.Fprintln(m.Stdout, k.Line)
		logf("accepted key %s for %s on %s (request %s, pushed by %s, expires %s)", k.Record.Fingerprint, user,
			k.Record.InstanceID, k.Record.RequestID, k.Record.Caller, k.Record.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}
