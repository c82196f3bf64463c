// Command keyless measures Postern's keyless SSH path end to end on
// loopback and prints the figures as Markdown (make bench writes them to
// BENCHMARKS.md):
//
//   - the sshd helper: `postern authorized-keys --config … USER FP` run as
//     sshd runs it, against a live agent holding a few records;
//   - the push round trip: SendSSHPublicKey through the AWS SDK for Go v2,
//     acknowledged by the agent and audited;
//   - sustained pushes per second from concurrent clients with several
//     access keys, on SQLite and again on PostgreSQL with one server
//     replica and with two (the agent on one, the clients spread over
//     both, so that half the pushes are routed through the database);
//   - `postern ssh INSTANCE -- true` against plain `ssh -i key` to the same
//     sshd.
//
// The PostgreSQL runs use the database POSTERN_BENCH_POSTGRES names
// (default: the local one the tests use), a fresh schema each; when it
// cannot be reached the report says so instead.
//
// It runs `postern server` and an agent as child processes and a private
// sshd with the helper installed under /usr/local/libexec, so it needs
// root, like `make demo`. Speed is reported, never asserted.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
)

// agentChildArg, as the first argument, makes this program the agent
// process of the rig.
const agentChildArg = "agent-child"

func main() {
	benchrig.Main("bench", run, map[string]func([]string) error{agentChildArg: runAgentChild})
}

// options are the command line.
type options struct {
	postern      string
	micro        string
	goFloor      string
	sections     string
	command      string
	helperN      int
	pushN        int
	sshN         int
	workers      int
	users        int
	sustainedMax int
	sustainedFor time.Duration
	hold         bool
}

func run(args []string) error {
	var o options
	fs := benchrig.NewFlagSet("keyless")
	fs.StringVar(&o.postern, "postern", "bin/postern", "the postern binary to measure")
	fs.StringVar(&o.micro, "micro", "", "output of go test -bench to add as a second table")
	fs.StringVar(&o.goFloor, "go-floor", "", "an empty Go program (bench/gofloor) to exec beside the helper, for the cost of starting any Go program")
	fs.StringVar(&o.sections, "sections", "", "a Markdown file of further sections (bench/tunnels' figures) to add before the micro-benchmarks")
	fs.StringVar(&o.command, "command", "make bench", "the command named in the report")
	fs.IntVar(&o.helperN, "helper-n", 300, "sshd helper runs")
	fs.IntVar(&o.pushN, "push-n", 1000, "sequential pushes for the round trip")
	// With 20 logins each, the ratio of medians moved between 1.12 and
	// 1.25 from run to run on a noisy host.
	fs.IntVar(&o.sshN, "ssh-n", 40, "logins with postern ssh and with plain ssh")
	fs.IntVar(&o.workers, "workers", 64, "concurrent pushing clients in the sustained run")
	fs.IntVar(&o.users, "users", 8, "IAM users (access keys) the clients sign with")
	fs.IntVar(&o.sustainedMax, "sustained-max", 20000, "at most this many pushes in the sustained run")
	fs.DurationVar(&o.sustainedFor, "sustained-for", 10*time.Second, "at most this long for the sustained run")
	fs.BoolVar(&o.hold, "hold", false, "set up, print how to reach the rig, and wait for Ctrl-C (for profiling by hand)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bound := 8 * time.Minute
	if o.hold {
		bound = 0
	}
	ctx, stop := benchrig.RunContext(bound)
	defer stop()

	rep := &report{opts: o, started: time.Now(), probeStart: benchrig.CPUProbe()}
	if o.micro != "" {
		b, err := os.ReadFile(o.micro)
		if err != nil {
			return err
		}
		rep.micro = parseMicro(string(b))
	}
	if o.sections != "" {
		b, err := os.ReadFile(o.sections)
		if err != nil {
			return err
		}
		rep.sections = strings.TrimSpace(string(b))
	}
	if err := measureSQLite(ctx, o, rep); err != nil || o.hold {
		return err
	}
	// Each PostgreSQL configuration on a rig of its own, after the
	// SQLite rig has stopped.
	rep.postgres = measurePostgres(ctx, o)
	rep.sshVersion = benchrig.SSHVersion()
	rep.probeEnd = benchrig.CPUProbe()
	rep.write(os.Stdout)
	return nil
}

// measureSQLite takes every keyless figure on a rig with one server on
// SQLite, and stops the rig.
func measureSQLite(ctx context.Context, o options, rep *report) error {
	progress("starting server, agent and sshd on loopback")
	r, err := startRig(ctx, rigConfig{Postern: o.postern, BenchUsers: o.users})
	if err != nil {
		return err
	}
	defer r.stop()
	if o.hold {
		r.describe(os.Stderr)
		<-ctx.Done()
		return nil
	}

	progress("sshd helper: %d runs", o.helperN)
	if rep.helper, err = measureHelper(ctx, r, o.helperN, o.goFloor, 60*time.Second); err != nil {
		return err
	}
	progress("push round trip: %d pushes", o.pushN)
	if rep.push, err = measurePushRTT(ctx, r, o.pushN, 30*time.Second); err != nil {
		return err
	}
	progress("postern ssh against plain ssh: %d logins each", o.sshN)
	if rep.ssh, err = measureSSH(ctx, r, o.sshN, 60*time.Second); err != nil {
		return err
	}
	// Last: it leaves thousands of live records in the agent.
	progress("sustained pushes: %d clients, %d access keys, up to %d pushes or %s", o.workers, o.users, o.sustainedMax, o.sustainedFor)
	if rep.sustained, err = measureSustained(ctx, r, o.workers, o.sustainedMax, o.sustainedFor); err != nil {
		return err
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
