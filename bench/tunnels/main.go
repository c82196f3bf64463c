// Command tunnels measures Instance Connect Endpoint tunnels end to end
// and prints the figures as a Markdown section (make bench adds it to
// BENCHMARKS.md):
//
//   - bulk throughput through a tunnel against direct TCP over the same
//     links, an OpenSSH bastion (`ssh -W`, what ProxyJump does) and
//     websockify;
//   - the open latency (presigned URL to the target's first byte), in
//     listen and in relay mode;
//   - tunnels opened per second by concurrent clients;
//   - the endpoint's memory per idle tunnel with 10,000 open.
//
// It builds network namespaces (a private one for the target, an edge for
// the endpoint and the peers), runs `postern server` and `postern endpoint
// run` as child processes and a TCP target (this program re-executed in
// the private namespace), so it needs root. Speed is reported, never
// asserted.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
)

func main() {
	benchrig.Main("bench tunnels", run, map[string]func([]string) error{targetChildArg: runTargetChild, tlsRelayChildArg: runTLSRelayChild})
}

// options are the command line.
type options struct {
	postern     string
	bulkMiB     int
	rounds      int
	latencyN    int
	rateWorkers int
	rateMax     int
	rateFor     time.Duration
	idle        int
	idleWorkers int
	hold        bool
}

func run(args []string) error {
	var o options
	fs := benchrig.NewFlagSet("tunnels")
	fs.StringVar(&o.postern, "postern", "bin/postern", "the postern binary to measure")
	fs.IntVar(&o.bulkMiB, "bulk-mib", 512, "MiB each way per bulk transfer")
	fs.IntVar(&o.rounds, "rounds", 3, "bulk rounds per path (after one warm-up round)")
	fs.IntVar(&o.latencyN, "latency-n", 200, "tunnels opened one at a time, per mode")
	fs.IntVar(&o.rateWorkers, "rate-workers", 32, "concurrent openers in the open-rate run")
	fs.IntVar(&o.rateMax, "rate-max", 5000, "at most this many tunnels in the open-rate run")
	fs.DurationVar(&o.rateFor, "rate-for", 10*time.Second, "at most this long for the open-rate run")
	fs.IntVar(&o.idle, "idle", 10000, "idle tunnels held open for the memory figure")
	fs.IntVar(&o.idleWorkers, "idle-workers", 32, "concurrent openers while opening the idle tunnels")
	fs.BoolVar(&o.hold, "hold", false, "set up, print how to reach the testbed, and wait for Ctrl-C")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bound := 12 * time.Minute
	if o.hold {
		bound = 0
	}
	ctx, stop := benchrig.RunContext(bound)
	defer stop()

	rep := &report{opts: o, started: time.Now()}
	progress("building namespaces; starting server, target, bastion sshd and websockify")
	rep.maxConnections = max(o.idle, o.rateWorkers)
	b, err := startTestbed(ctx, config{Postern: o.postern, MaxTunnels: rep.maxConnections})
	if err != nil {
		return err
	}
	defer b.stop()
	rep.websockifyVersion, rep.websockifyInstalled, rep.rlimit = b.websockifyVersion, b.websockifyInstalled, b.rlimit
	idle := o.idle
	if limit := b.maxTunnels(); idle > limit {
		progress("the open-files limit is %d and this process may not raise it (no CAP_SYS_RESOURCE): holding %d idle tunnels, not %d", b.rlimit, limit, idle)
		idle, rep.idleCapped = limit, true
	}
	rep.sshVersion = benchrig.SSHVersion()

	ep, dnsName, err := b.startEndpoint(ctx, "listen", "")
	if err != nil {
		return err
	}
	if o.hold {
		b.describe(os.Stderr, dnsName)
		<-ctx.Done()
		return nil
	}
	n := int64(o.bulkMiB) << 20
	progress("bulk throughput: %d MiB each way, %d rounds, 5 paths", o.bulkMiB, o.rounds)
	if rep.bulk, err = measureBulk(ctx, b, dnsName, n, o.rounds, 3*time.Minute); err != nil {
		return err
	}
	progress("open latency, listen mode: %d tunnels", o.latencyN)
	if rep.listen, err = measureOpenLatency(ctx, b, "listen", dnsName, o.latencyN, 60*time.Second); err != nil {
		return err
	}
	progress("open rate: %d openers, up to %d tunnels or %s", o.rateWorkers, o.rateMax, o.rateFor)
	rep.rate = measureOpenRate(ctx, b, dnsName, o.rateWorkers, o.rateMax, o.rateFor, ep)

	// A fresh endpoint process for the memory figure, so that what the
	// runs above left in its heap does not blur the baseline.
	ep.Stop(15 * time.Second)
	if ep, dnsName, err = b.startEndpoint(ctx, "listen", "GODEBUG=gctrace=1"); err != nil {
		return err
	}
	pid, err := endpointPID(ep)
	if err != nil {
		return err
	}
	progress("memory: %d idle tunnels, %d openers", idle, o.idleWorkers)
	if rep.memory, err = measureIdleMemory(ctx, b, dnsName, ep, pid, idle, o.idleWorkers, 4*time.Minute); err != nil {
		return err
	}

	ep.Stop(15 * time.Second)
	if ep, dnsName, err = b.startEndpoint(ctx, "relay", ""); err != nil {
		return err
	}
	progress("open latency, relay mode: %d tunnels", o.latencyN)
	if rep.relay, err = measureOpenLatency(ctx, b, "relay", dnsName, o.latencyN, 60*time.Second); err != nil {
		return err
	}
	ep.Stop(15 * time.Second)
	rep.write(os.Stdout)
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench tunnels: "+format+"\n", args...)
}
