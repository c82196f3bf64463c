// Command postern-authorized-keys is sshd's AuthorizedKeysCommand helper:
// `postern authorized-keys` in a binary that imports only the helper's
// code (package authkeys), so that it starts in a few milliseconds on
// every login attempt instead of the full postern binary's tens.
//
//	AuthorizedKeysCommand /usr/local/libexec/postern-authorized-keys --config /etc/postern/helper.json %u %f
//	AuthorizedKeysCommandUser postern
//
// It prints the valid pushed keys for USER and exits 0; on any doubt it
// prints nothing and still exits 0, so that sshd simply falls back to its
// other methods. postern agent install sets it up.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/postern-dev/postern/authkeys"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern-authorized-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: postern-authorized-keys [--config FILE] USER [FINGERPRINT]")
		fmt.Fprintln(stderr, "\n# in sshd_config (postern agent install writes this):")
		fmt.Fprintf(stderr, "AuthorizedKeysCommand /usr/local/libexec/postern-authorized-keys --config %s %%u %%f\n", authkeys.DefaultConfigPath)
		fmt.Fprintln(stderr, "AuthorizedKeysCommandUser postern")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	config := fs.String("config", authkeys.DefaultConfigPath, "the helper's pinned instance id, server key and agent socket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "postern-authorized-keys: want USER [FINGERPRINT]")
		return 2
	}
	defer authkeys.Watchdog()()
	logf, closeLog := authkeys.Syslog()
	defer closeLog()
	authkeys.Print(stdout, logf, *config, fs.Arg(0), fs.Arg(1), time.Now(), authkeys.Timeout)
	return 0
}
