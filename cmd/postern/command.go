package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Main holds the process's standard streams and environment so that
// commands never reach for globals and tests can run them in-process.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// command is one subcommand (or a group of them).
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, m *Main, args []string) error
}

// commands lists the top-level subcommands in help order.
func commands() []command {
	return []command{
		{"server", "run the control plane (API, audit trail)", runServer},
		{"dev", "run server, agent and a demo instance in one process", runDev},
		{"env", "print the environment that points AWS tools at a server", runEnv},
		{"user", "manage IAM users", groupRunner("user", userCommands)},
		{"access-key", "manage access keys", groupRunner("access-key", accessKeyCommands)},
		{"group", "manage IAM groups", groupRunner("group", groupCommands)},
		{"policy", "manage inline policies and simulate decisions", groupRunner("policy", policyCommands)},
		{"vpc", "declare networks", groupRunner("vpc", vpcCommands)},
		{"subnet", "declare subnets inside networks", groupRunner("subnet", subnetCommands)},
		{"endpoint", "manage Instance Connect Endpoints", groupRunner("endpoint", endpointCommands)},
		{"instance", "list and deregister instances", groupRunner("instance", instanceCommands)},
		{"activation", "create activations that register hosts", groupRunner("activation", activationCommands)},
		{"agent", "run on a managed host: register, run, install", groupRunner("agent", agentCommands)},
		{"authorized-keys", "sshd's AuthorizedKeysCommand helper", runAuthorizedKeys},
		{"send-ssh-public-key", "push a public key that lives 60 seconds", apiRunner(runSendSSHPublicKey)},
		{"ssh", "log in with an ephemeral key and stock OpenSSH", runSSH},
		{"proxy", "ssh ProxyCommand: push your key, then connect", runProxy},
		{"open-tunnel", "tunnel a TCP port through an Instance Connect Endpoint", apiRunner(runOpenTunnel)},
		{"ssh-config", "print the ssh_config block for ssh, scp, sftp, rsync", runSSHConfig},
		{"tag", "tag instances, VPCs and subnets", groupRunner("tag", tagCommands)},
		{"audit", "look up, verify and export the audit trail", groupRunner("audit", auditCommands)},
		{"recording", "list and export recorded console sessions", groupRunner("recording", recordingCommands)},
		{"version", "print the version", runVersion},
	}
}

// exitError carries a specific exit status.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError is a mistake in how a command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Run runs the command line and returns the process exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		m.usage(m.Stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return m.exit(c.run(ctx, m, args[1:]))
		}
	}
	fmt.Fprintf(m.Stderr, "postern: unknown command %q; run 'postern --help'\n", args[0])
	return 2
}

func (m *Main) exit(err error) int {
	var ee exitError
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(m.Stderr, "postern: %s\n", ue.msg)
		return 2
	}
	fmt.Fprintf(m.Stderr, "postern: %s\n", oneLine(err.Error()))
	return 1
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (m *Main) usage(w io.Writer) {
	fmt.Fprint(w, `Postern: keyless SSH and identity-aware tunnels for any Linux fleet,
speaking the AWS EC2 Instance Connect APIs.

Usage: postern <command> [flags]

Commands:
`)
	var rows [][2]string
	for _, c := range commands() {
		rows = append(rows, [2]string{c.name, c.summary})
	}
	printNamed(w, rows)
	fmt.Fprint(w, `
Run 'postern <command> --help' for a command's flags and an example.
Client commands read the same settings as the AWS SDKs: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
AWS_CA_BUNDLE and ~/.aws/config; 'postern env' prints them for a server.
`)
}

// printNamed prints name–summary rows of a help text, the summaries
// aligned after the longest name.
func printNamed(w io.Writer, rows [][2]string) {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r[0], r[1])
	}
}

// subcommand is one verb of a command group ("user create").
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, m *Main, args []string) error
}

// groupRunner dispatches "postern <group> <verb> …".
func groupRunner(group string, subs func() []subcommand) func(context.Context, *Main, []string) error {
	return func(ctx context.Context, m *Main, args []string) error {
		list := subs()
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprintf(m.Stdout, "Usage: postern %s <verb> [flags]\n\nVerbs:\n", group)
			var rows [][2]string
			for _, s := range list {
				rows = append(rows, [2]string{s.name, s.summary})
			}
			printNamed(m.Stdout, rows)
			fmt.Fprintf(m.Stdout, "\nRun 'postern %s <verb> --help' for flags and an example.\n", group)
			if len(args) == 0 {
				return usagef("%s: missing verb", group)
			}
			return nil
		}
		for _, s := range list {
			if s.name == args[0] {
				return s.run(ctx, m, args[1:])
			}
		}
		return usagef("%s: unknown verb %q; run 'postern %s --help'", group, args[0], group)
	}
}

// flagSet is a flag.FlagSet that knows its help text.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlagSet returns a flagSet for "postern <usage>"; --help prints the
// usage line, the flags and the example to m.Stdout.
func (m *Main) newFlagSet(name, usage, example string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are reported by Main.exit as one line; the flag package must
	// not print the whole usage for a typo.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, help: func() {
		fmt.Fprintf(m.Stdout, "Usage: postern %s\n\nFlags:\n", usage)
		fs.SetOutput(m.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if example != "" {
			fmt.Fprintf(m.Stdout, "\nExample:\n  %s\n", strings.ReplaceAll(example, "\n", "\n  "))
		}
	}}
}

// parse parses args, turning flag errors into usage errors and refusing
// stray positional arguments unless allowed.
func (fs *flagSet) parse(args []string, positional bool) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.help()
			return flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	if !positional && fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}
