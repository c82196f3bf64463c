package main

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
)

// Targets of issue 4.
const (
	targetThroughputRatio = 0.5
	targetOpenMedian      = 10 * time.Millisecond
	targetIdleBytes       = 64 << 10
	targetIdleTunnels     = 10000
)

// report is what a run measured.
type report struct {
	opts                options
	started             time.Time
	bulk                []*bulkResult
	listen, relay       *latencyResult
	rate                *rateResult
	memory              *memoryResult
	websockifyVersion   string
	websockifyInstalled bool
	sshVersion          string
	rlimit              uint64
	idleCapped          bool // the open-files limit held fewer idle tunnels than asked
	maxConnections      int  // the endpoint's setting
}

func (r *report) bulkPath(name string) *bulkResult {
	for _, b := range r.bulk {
		if b.Path == name {
			return b
		}
	}
	return nil
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	o := r.opts
	p("## Instance Connect Endpoint tunnels (issue 4)")
	p("")
	p("`bench/tunnels` (as root) builds two network namespaces joined to the root one by veth pairs: a private")
	p("one holding the target, a plain TCP server, at a 10.x address in the endpoint's VPC, and an edge one")
	p("holding `postern endpoint run` and the peers it is compared with, an OpenSSH `sshd` bastion and")
	p("`websockify`, and a bare TLS relay as a ceiling. `postern server` (SQLite store, auditing on, `--throttle-rate 0`) and the clients run in")
	p("the root namespace; the edge forwards between its two links, so direct TCP from the root namespace to")
	p("the target crosses the same two veth pairs a tunnel does. Tunnels are presigned with `opentunnel.Presign`")
	p("(the AWS SDK for Go v2 signer) as an IAM user whose policy allows OpenTunnel to the target's port, and")
	p("opened with `opentunnel.Dial`, as `postern open-tunnel` does. All processes share the machine's %d cores.", runtime.NumCPU())
	p("")

	direct := r.bulkPath(pathDirect)
	if len(r.bulk) > 0 && direct != nil {
		p("| bulk throughput, %d MiB each way | upload | download | both ways | vs direct TCP | CPU busy | target | met |", o.bulkMiB)
		p("|---|---:|---:|---:|---:|---:|---|---|")
		tun := r.bulkPath(pathTunnel)
		for _, b := range r.bulk {
			ratio := b.BothMBps() / direct.BothMBps()
			target, met := "", ""
			switch b.Path {
			case pathTunnel:
				ahead := true
				for _, peer := range []string{pathSSH, pathWebsockify} {
					if pb := r.bulkPath(peer); pb != nil && pb.BothMBps() >= b.BothMBps() {
						ahead = false
					}
				}
				target = fmt.Sprintf("≥ %.0f%% of direct, ahead of both peers", 100*targetThroughputRatio)
				met = benchrig.Verdict(ratio >= targetThroughputRatio && ahead)
			case pathSSH, pathWebsockify:
				if tun != nil {
					target = fmt.Sprintf("tunnel: %.2f× this", tun.BothMBps()/b.BothMBps())
				}
			case pathTLSRelay:
				if tun != nil {
					target = fmt.Sprintf("tunnel: %.0f%% of this ceiling", 100*tun.BothMBps()/b.BothMBps())
				}
			}
			p("| %s | %.0f MB/s | %.0f MB/s | **%.0f MB/s** | %.0f%% | %.0f%% | %s | %s |", pathLabel(b.Path), b.UpMBps(), b.DownMBps(), b.BothMBps(), 100*ratio, 100*b.busy(), target, met)
		}
		p("")
	}

	p("| what | runs | median | p99 | target | met |")
	p("|---|---:|---:|---:|---|---|")
	for _, l := range []*latencyResult{r.listen, r.relay} {
		if l == nil {
			continue
		}
		target, met := "", ""
		what := "open latency, listen mode: presigned URL → TCP + TLS to the endpoint → WebSocket upgrade, authorized by the server (audited) → target dialled → first byte"
		if l.Mode == "relay" {
			what = "open latency, relay mode: presigned URL → TCP + TLS to the server → the server hands the tunnel to the endpoint over its control connection, the endpoint dials back → target → first byte"
			target = "reported"
		} else {
			target = "median ≤ " + benchrig.MS(targetOpenMedian)
			met = benchrig.Verdict(len(l.Open) > 0 && l.Open.Median() <= targetOpenMedian && len(l.Errors) == 0)
		}
		p("| %s | %d | %s | %s | %s | %s |", what, len(l.Open), benchrig.MS(l.Open.Median()), benchrig.MS(l.Open.P99()), target, met)
	}
	if t := r.rate; t != nil {
		p("| tunnels opened per second: %d concurrent clients, each open, first byte, close, back to back; **%.0f tunnels/s** (%d in %.1f s, %d failed) | %d | %s | %s | reported | |",
			t.Workers, t.rate(), t.Opened, t.Elapsed.Seconds(), benchrig.ErrorCount(t.Errors), t.Opened, benchrig.MS(t.Latency.Median()), benchrig.MS(t.Latency.P99()))
	}
	if m := r.memory; m != nil {
		per := m.perTunnel()
		p("| endpoint memory per idle tunnel: RSS with %d tunnels open less RSS with none, over %d; **%.1f KiB per tunnel** (RSS %s → %s) | %d | | | ≤ %d KiB with %d open | %s |",
			m.Opened, m.Opened, per/1024, mib(m.Before), mib(m.After), m.Opened, targetIdleBytes>>10, targetIdleTunnels,
			// Held fewer than the target only where the machine's open-files
			// cap forbids more (said below): the per-tunnel figure does not
			// depend on the count.
			benchrig.Verdict((m.Opened >= targetIdleTunnels || r.idleCapped) && m.Alive == m.Opened && per <= targetIdleBytes))
		if m.GCSeen {
			p("| … by the Go runtime's account (gctrace): live heap + stacks after the first GC with all %d open, less before; **%.1f KiB per tunnel** (%d → %d MB) | %d | | | | |",
				m.Opened, m.heapPerTunnel()/1024, m.GCBefore.LiveMB+m.GCBefore.Stacks, m.GCAfter.LiveMB+m.GCAfter.Stacks, m.Opened)
		}
		if m.Ramp > 0 {
			p("| … tunnels opened per second while opening them, each held open (%d openers): **%.0f tunnels/s** over %.1f s | %d | | | reported | |",
				m.Workers, float64(m.Opened)/m.Ramp.Seconds(), m.Ramp.Seconds(), m.Opened)
		}
	}
	p("")
	p("How each figure is taken:")
	p("")
	if direct != nil {
		p("- Bulk throughput: per path, %d rounds after a 32 MiB warm-up, interleaved path by path so that all see the", o.rounds)
		p("  same machine; each round opens a fresh connection, waits for the target's one-byte greeting, uploads")
		p("  %d MiB (the target drops it and answers one byte when it has all) and downloads %d MiB, in writes of", o.bulkMiB, o.bulkMiB)
		p("  %d bytes (one WebSocket frame each, under the 65,000-byte limit). Each column is the median round; \"both", chunk)
		p("  ways\" is the bytes of both over the time of both. MB is 10⁶ bytes. Each transfer is bounded to 3 minutes.")
		p("  \"CPU busy\" is the whole machine's (all %d cores, from `/proc/stat`) over the median round's transfers:", runtime.NumCPU())
		p("  near 100%% means the path is bound by this machine's CPU, shared by client, proxy, target and kernel.")
		p("  The paths: **direct TCP** from the root namespace to the target, forwarded by the edge; the **Postern")
		p("  tunnel** through `postern endpoint run --mode listen` (TLS 1.3, WebSocket, the endpoint's own TCP")
		p("  connection to the target); an **OpenSSH bastion**, `%s` in the edge namespace, reached with the forwarding", r.sshVersion)
		p("  that ProxyJump sets up, `ssh -W TARGET:PORT root@BASTION` (cipher `%s`, as the tunnel's TLS", sshCipher)
		p("  negotiates, rather than OpenSSH's default chacha20-poly1305; the client's stdin and stdout are the")
		p("  stream; a real ProxyJump adds an inner SSH session to the target on top); and **websockify** %s (Debian's", r.websockifyVersion)
		p("  package, Python, `--ssl-only` with a certificate of the run's own), a WebSocket-to-TCP bridge like the")
		if r.websockifyInstalled {
			p("  endpoint without the identity part. websockify was not installed, so this run installed it with")
			p("  `apt-get install websockify`.")
		} else {
			p("  endpoint without the identity part (already installed on this machine).")
		}
		p("  The **TLS relay** is the least any TLS tunnel does, as a ceiling: a program in the edge namespace that")
		p("  accepts TLS 1.3 with Go's crypto/tls, as the endpoint does, and copies each connection's bytes to and")
		p("  from its own TCP connection to the target; no WebSocket, no authorization, no audit.")
		if tun := r.bulkPath(pathTunnel); tun != nil && tun.BothMBps() < targetThroughputRatio*direct.BothMBps() {
			p("  **Why the tunnel stays under %.0f%% of direct TCP here:** direct TCP is kernel copies only, while every", 100*targetThroughputRatio)
			p("  tunnel byte is encrypted and decrypted by TLS at the client and at the endpoint, framed (and, client")
			p("  to endpoint, masked) as WebSocket, and copied through the endpoint's user space, on the same %d cores", runtime.NumCPU())
			p("  as the client, the target and the kernel's forwarding; the CPU busy column shows them near full for")
			p("  every proxied path. The micro-benchmark `tunnel BenchmarkPipe` below shows the data plane alone (no")
			p("  TLS, no network). The peers do the same kind of work and the tunnel leads both.")
			if relay := r.bulkPath(pathTLSRelay); relay != nil {
				p("  The TLS relay, which does only the part every TLS tunnel must do, reaches %.0f%% of direct TCP on", 100*relay.BothMBps()/direct.BothMBps())
				p("  this machine; %.0f%% is beyond any tunnel that encrypts here. The tunnel carries %.0f%% of what the", 100*targetThroughputRatio, 100*tun.BothMBps()/relay.BothMBps())
				p("  relay does: the rest is WebSocket framing and masking, and one more copy per direction.")
			}
		}
	}
	if r.listen != nil {
		p("- Open latency: 10 warm-up opens, then up to %d one after the other, per mode; each a new presigned URL", o.latencyN)
		p("  (signing took %s median, not counted), a new TCP connection and TLS handshake, the server's", benchrig.MS(r.listen.Presign.Median()))
		p("  SigV4 check, policy decision and audit record (group commit), the endpoint's dial of the target, and")
		p("  the target's greeting as the first frame. Each tunnel is then closed with code 1000, outside the timing.")
		p("  Relay mode is measured last, after the listen-mode endpoint stopped and `postern endpoint run --mode")
		p("  relay` joined with the same credential.")
		for _, l := range []*latencyResult{r.listen, r.relay} {
			if l != nil && len(l.Errors) > 0 {
				p("  **%s mode: failures: %s.**", l.Mode, benchrig.FormatErrors(l.Errors))
			}
		}
	}
	if t := r.rate; t != nil {
		p("- Open rate: bounded by %d tunnels or %s, whichever comes first; the latency columns are per open", o.rateMax, o.rateFor)
		p("  (presign to first byte) under that load. CPU per tunnel: server %s, endpoint %s, clients %s", perOpen(t.CPU["server"], t.Opened),
			perOpen(t.CPU["endpoint"], t.Opened), perOpen(t.CPU["client"], t.Opened))
		p("  (%.0f%% of the machine's %d cores in all): every open is a TLS handshake at the endpoint and at the",
			100*float64(t.CPU["server"]+t.CPU["endpoint"]+t.CPU["client"])/float64(t.Elapsed)/float64(runtime.NumCPU()), runtime.NumCPU())
		p("  client, an authorization call from the endpoint to the server and an audited decision there, and a")
		p("  close record.")
		if len(t.Errors) > 0 {
			p("  Failures: %s.", benchrig.FormatErrors(t.Errors))
		}
		if busy := float64(t.CPU["server"]+t.CPU["endpoint"]+t.CPU["client"]) / float64(t.Elapsed) / float64(runtime.NumCPU()); busy < 0.8 {
			p("  The cores are not full, so waiting rather than CPU bounds this figure (each open waits for the")
			p("  server's decision, which answers once its audit record's batch has committed); opening without")
			p("  closing (the memory run's ramp below) goes faster.")
		}
	}
	if m := r.memory; m != nil {
		p("- Memory: a fresh `postern endpoint run` process (endpoint connection limit set to %d with", r.maxConnections)
		p("  `endpoint create --max-connections`; open-files limit %d for the bench and its children). After 50", r.rlimit)
		p("  warm-up tunnels, its VmRSS (from `/proc/PID/status`) is read every 0.5 s until five readings lie within")
		p("  1%%; then %d clients open %d tunnels to the idle target (each gets the target's greeting, then", m.Workers, m.Want)
		p("  stays open with a read in progress, which answers the endpoint's pings), and VmRSS is read again the")
		p("  same way, after the endpoint's first garbage collection with them all open (the runtime forces one")
		p("  within two minutes; %.0f s in all). %d of %d tunnels were still open at that reading. The figure is the", m.Settle.Seconds(), m.Alive, m.Opened)
		p("  endpoint process's memory alone: socket buffers are the kernel's, and the server and the target are")
		p("  other processes. RSS includes the heap's headroom (the endpoint collects at 30%% heap growth, so the")
		p("  heap may reach 1.3 times the live heap before a collection) and memory the runtime has not returned")
		p("  to the kernel yet; the runtime's row, from the endpoint run with `GODEBUG=gctrace=1`, is the live")
		p("  heap and goroutine stacks alone, in whole MB.")
		if m.perTunnel() > targetIdleBytes && m.GCSeen && m.heapPerTunnel() <= targetIdleBytes {
			p("  **Why RSS exceeds %d KiB per tunnel:** the runtime's live heap and stacks grow by %.1f KiB per", targetIdleBytes>>10, m.heapPerTunnel()/1024)
			p("  tunnel; the rest of the RSS is the heap's headroom before a collection and memory the runtime has")
			p("  not returned to the kernel yet.")
		}
		if r.idleCapped {
			p("  **Fewer than %d tunnels:** this machine's hard open-files limit is %d and the bench, root without", o.idle, r.rlimit)
			p("  CAP_SYS_RESOURCE here, may not raise it; the endpoint holds two sockets per tunnel, so %d is the most", m.Want)
			p("  that fits. The per-tunnel figure does not depend on the count; on a host that allows it the bench")
			p("  raises the limit and holds %d.", o.idle)
		}
		if len(m.Errors) > 0 {
			p("  Failures while opening: %s.", benchrig.FormatErrors(m.Errors))
		}
	}
}

func pathLabel(path string) string {
	switch path {
	case pathTunnel:
		return "**" + path + "** (listen mode)"
	case pathSSH:
		return path + " (`ssh -W`, as ProxyJump)"
	case pathTLSRelay:
		return path + " (ceiling: TLS only, no WebSocket, no authorization)"
	}
	return path
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func perOpen(d time.Duration, n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(n)/float64(time.Millisecond))
}
