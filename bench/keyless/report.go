package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
)

// Targets of issue 3.
const (
	targetHelperP99  = 10 * time.Millisecond
	targetPushMedian = 5 * time.Millisecond
	targetPushRate   = 2000.0
	targetSSHRatio   = 1.2
)

// microResult is one line of go test -bench output.
type microResult struct {
	pkg, name string
	iters     string
	metrics   [][2]string // value, unit
}

// parseMicro reads go test -bench output.
func parseMicro(out string) []microResult {
	var res []microResult
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), "github.com/postern-dev/postern/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		m := microResult{pkg: pkg, name: f[0], iters: f[1]}
		for i := 2; i+1 < len(f); i += 2 {
			m.metrics = append(m.metrics, [2]string{f[i], f[i+1]})
		}
		res = append(res, m)
	}
	return res
}

func (m microResult) metric(unit string) string {
	for _, kv := range m.metrics {
		if kv[1] == unit {
			return kv[0]
		}
	}
	return ""
}

// others are the metrics besides the standard three.
func (m microResult) others() string {
	var out []string
	for _, kv := range m.metrics {
		switch kv[1] {
		case "ns/op", "B/op", "allocs/op":
		default:
			out = append(out, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(out, ", ")
}

// report is what a run measured.
type report struct {
	opts       options
	started    time.Time
	helper     *helperResult
	push       *pushResult
	ssh        *sshResult
	sustained  *sustainedResult
	micro      []microResult
	sections   string // further Markdown sections
	sshVersion string
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	o := r.opts
	p("# Benchmarks")
	p("")
	p("Produced by `%s` on %s. It runs `go test -run '^$' -bench . -benchmem -count 1 ./...`, then", o.command, r.started.UTC().Format("2006-01-02 15:04 UTC"))
	p("`bench/keyless` (as root), which starts `postern server` (SQLite store, auditing on, `--throttle-rate 0`),")
	p("an agent registered through an activation, and a private `sshd` on a loopback port whose")
	p("`AuthorizedKeysCommand` is the installed helper, then measures them over loopback; and `bench/tunnels`")
	p("(as root too), whose set-up its own section describes.")
	p("")
	p("Machine:")
	p("")
	p("- `nproc`: %d; CPU: %s", runtime.NumCPU(), cpuModel())
	p("- %s, kernel %s, %s/%s", osName(), kernel(), runtime.GOOS, runtime.GOARCH)
	p("- Go: %s; %s", runtime.Version(), r.sshVersion)
	p("- syslog: %s", syslogNote(r.helper))
	p("")
	p("The machine may be shared and noisy: compare figures and ratios measured in the same run, not across")
	p("runs. Client, server, agent and sshd all share the same cores.")
	p("")
	p("## Keyless SSH (issue 3)")
	p("")
	p("| what | runs | median | p99 | target | met |")
	p("|---|---:|---:|---:|---|---|")
	if h := r.helper; h != nil {
		p("| sshd helper: `%s --config … USER FP` exec'd as the helper user, agent holding %d records for USER | %d | %s | %s | p99 ≤ %s | %s |",
			h.Command, h.Records, len(h.Exec), benchrig.MS(h.Exec.Median()), benchrig.MS(h.Exec.P99()), benchrig.MS(targetHelperP99), benchrig.Verdict(len(h.Exec) > 0 && h.Exec.P99() <= targetHelperP99 && h.WrongAnswers == 0))
		p("| … of which the work itself: `agent.AuthorizedKeys` in process (socket query, signature and expiry checks) | %d | %s | %s | | |",
			len(h.InProc), benchrig.MS(h.InProc.Median()), benchrig.MS(h.InProc.P99()))
		p("| … floor: the whole `postern` binary exec'd to print its version (process start-up, no work) | %d | %s | %s | | |",
			len(h.Version), benchrig.MS(h.Version.Median()), benchrig.MS(h.Version.P99()))
		p("| … floor: `/bin/true` exec'd the same way (this machine's fork and exec) | %d | %s | %s | | |",
			len(h.True), benchrig.MS(h.True.Median()), benchrig.MS(h.True.P99()))
	}
	if pr := r.push; pr != nil {
		p("| push round trip: `SendSSHPublicKey` (AWS SDK for Go v2, one IAM user, sequential), returns after the agent's ack and the audit commit | %d | %s | %s | median ≤ %s | %s |",
			len(pr.RTT), benchrig.MS(pr.RTT.Median()), benchrig.MS(pr.RTT.P99()), benchrig.MS(targetPushMedian), benchrig.Verdict(len(pr.RTT) > 0 && pr.RTT.Median() <= targetPushMedian && pr.Errors == 0))
	}
	if s := r.sustained; s != nil {
		p("| sustained pushes: %d concurrent SDK clients over %d access keys, one agent; **%.0f pushes/s** (%d in %.1f s, %d failed) | %d | %s | %s | ≥ %.0f/s | %s |",
			s.Workers, s.Keys, s.rate(), s.Pushes, s.Elapsed.Seconds(), benchrig.ErrorCount(s.Errors), s.Pushes, benchrig.MS(s.Latency.Median()), benchrig.MS(s.Latency.P99()),
			targetPushRate, benchrig.Verdict(s.rate() >= targetPushRate && benchrig.ErrorCount(s.Errors) == 0))
	}
	if s := r.ssh; s != nil && len(s.Plain) > 0 && s.Plain.Median() > 0 {
		ratio := float64(s.Postern.Median()) / float64(s.Plain.Median())
		p("| `postern ssh INSTANCE -- true` (resolve, ephemeral key, push, known_hosts, ssh) | %d | %s | %s | | |", len(s.Postern), benchrig.MS(s.Postern.Median()), benchrig.MS(s.Postern.P99()))
		p("| plain `ssh -i key -p PORT USER@127.0.0.1 -- true`, same sshd and helper | %d | %s | %s | | |", len(s.Plain), benchrig.MS(s.Plain.Median()), benchrig.MS(s.Plain.P99()))
		p("| ratio of medians, postern ssh / plain ssh (postern ssh adds %s) | | **%.2f×** | | ≤ %.1f× | %s |",
			benchrig.MS(s.Postern.Median()-s.Plain.Median()), ratio, targetSSHRatio, benchrig.Verdict(ratio <= targetSSHRatio))
	}
	p("")
	p("How each figure is taken:")
	p("")
	p("- Helper: sshd's view of it — fork and exec of the root-owned copy under `/usr/local/libexec`, as the")
	p("  `AuthorizedKeysCommandUser`, with sshd's near-empty environment; every answer is checked (exactly the")
	p("  pushed key, with `expiry-time`). The second row repeats the helper's work inside this process; the")
	p("  two floors show what process start-up alone costs, for the postern binary and for the smallest one.")
	if r.helper != nil && r.helper.WrongAnswers > 0 {
		p("  **%d runs gave a wrong answer.**", r.helper.WrongAnswers)
	}
	p("- Push round trip: 50 warm-up calls, then %d calls on one kept-alive TLS connection; each is", o.pushN)
	p("  SigV4-verified, authorized by the user's IAM policy, signed, delivered to the agent over its")
	p("  WebSocket, acknowledged, and audited (group commit) before the SDK sees the answer.")
	if r.push != nil && r.push.Errors > 0 {
		p("  **%d calls failed.**", r.push.Errors)
	}
	if s := r.sustained; s != nil {
		p("- Sustained: bounded by %d pushes or %s, whichever comes first; the latency columns are per call", o.sustainedMax, o.sustainedFor)
		p("  under that load. CPU used during the run, per push: server %s, agent %s, load generator %s",
			perPush(s.CPU["server"], s.Pushes), perPush(s.CPU["agent"], s.Pushes), perPush(s.CPU["client"], s.Pushes))
		p("  (%.0f%% of the machine's %d cores in all). The server alone, given the %d cores, would thus serve about", 100*float64(s.CPU["server"]+s.CPU["agent"]+s.CPU["client"])/float64(s.Elapsed)/float64(runtime.NumCPU()), runtime.NumCPU(), runtime.NumCPU())
		p("  %s pushes/s; the measured rate is lower because the load generator and the agent run on the same cores.", capacity(s.CPU["server"], s.Pushes))
		if len(s.Errors) > 0 {
			p("  Failures: %s.", benchrig.FormatErrors(s.Errors))
		}
	}
	if s := r.ssh; s != nil {
		p("- `postern ssh` against plain ssh: %d logins each after 2 warm-ups, interleaved. `postern ssh` runs", len(s.Postern))
		p("  as `%s` (a new process: SDK set-up, TLS handshake, GetInstanceConnectInfo, a new", s.PosternCmd)
		p("  Ed25519 key, SendSSHPublicKey, then OpenSSH's `ssh`). Plain ssh runs as `%s`;", s.PlainCmd)
		p("  its key is pushed before each run, outside the timing, since this sshd knows no other keys.")
	}
	if r.sections != "" {
		p("")
		p("%s", r.sections)
	}
	if len(r.micro) > 0 {
		p("")
		p("## Micro-benchmarks (`go test -bench`)")
		p("")
		p("| package | benchmark | iterations | ns/op | B/op | allocs/op | other |")
		p("|---|---|---:|---:|---:|---:|---|")
		for _, m := range r.micro {
			p("| %s | %s | %s | %s | %s | %s | %s |", m.pkg, m.name, m.iters, m.metric("ns/op"), m.metric("B/op"), m.metric("allocs/op"), m.others())
		}
	}
}

func perPush(d time.Duration, n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(n)/float64(time.Microsecond))
}

// capacity is how many pushes per second all cores could serve at a CPU
// cost of d for n pushes.
func capacity(d time.Duration, n int) string {
	if d <= 0 || n == 0 {
		return "–"
	}
	perPush := float64(d) / float64(n)
	return fmt.Sprintf("%.0f", float64(runtime.NumCPU())*float64(time.Second)/perPush)
}

func syslogNote(h *helperResult) string {
	if h != nil && !h.SyslogPresent {
		return "no socket, so the helper's authpriv lines went nowhere (a real host adds one local datagram per accepted key)"
	}
	return "present"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func osName() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}
