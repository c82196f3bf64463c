package main

import (
	"context"
	"time"

	"github.com/postern-dev/postern/authkeys"
)

// helperTimeout bounds the helper's exchange with the agent: sshd waits on
// it for every login attempt.
const helperTimeout = authkeys.Timeout

// runAuthorizedKeys is sshd's AuthorizedKeysCommand (the slim
// postern-authorized-keys binary runs the same code and starts faster;
// postern agent install prefers it when built). It prints the valid
// pushed keys for the user and exits 0; on any doubt it prints nothing
// and still exits 0, so that sshd simply falls back to its other methods.
func runAuthorizedKeys(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("authorized-keys", "authorized-keys [--config FILE] USER [FINGERPRINT]",
		"# in sshd_config (postern agent install writes this):\n"+
			"AuthorizedKeysCommand /usr/local/libexec/postern authorized-keys %u %f\n"+
			"AuthorizedKeysCommandUser postern")
	config := fs.String("config", authkeys.DefaultConfigPath, "the helper's pinned instance id, server key and agent socket")
	if err := fs.parse(args, true); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usagef("authorized-keys: want USER [FINGERPRINT]")
	}
	defer authkeys.Watchdog()()
	logf, closeLog := authkeys.Syslog()
	defer closeLog()
	authkeys.Print(m.Stdout, logf, *config, fs.Arg(0), fs.Arg(1), time.Now(), helperTimeout)
	return nil
}
