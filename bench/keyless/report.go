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
	opts    options
	started time.Time
	// probes are benchrig.CPUProbe before the first run and after the last.
	probeStart, probeEnd float64
	helper               *helperResult
	push                 *pushResult
	ssh                  *sshResult
	sustained            *sustainedResult
	postgres             *pgResult // the sustained run on PostgreSQL, one and two replicas
	micro                []microResult
	sections             string // further Markdown sections
	sshVersion           string
}

func (r *report) write(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	o := r.opts
	p("# Benchmarks")
	p("")
	p("Produced by `%s` on %s. It runs `go test -run '^$' -bench . -benchmem -count 1 ./...`, then", o.command, r.started.UTC().Format("2006-01-02 15:04 UTC"))
	p("`bench/keyless` (as root), which starts `postern server` (SQLite store, auditing on, `--throttle-rate 0`),")
	p("an agent registered through an activation, and a private `sshd` on a loopback port whose")
	p("`AuthorizedKeysCommand` is the installed helper, then measures them over loopback, and repeats the sustained")
	p("pushes with the servers on PostgreSQL, one replica and two; and `bench/tunnels` (as root too), whose set-up")
	p("its own section describes.")
	p("")
	p("Machine:")
	p("")
	p("- `nproc`: %d; CPU: %s", runtime.NumCPU(), cpuModel())
	p("- %s, kernel %s, %s/%s", osName(), kernel(), runtime.GOOS, runtime.GOARCH)
	p("- Go: %s; %s", runtime.Version(), r.sshVersion)
	p("- syslog: %s", syslogNote(r.helper))
	p("- speed probe (one core sorting a million integers; lower is faster): %.0f ms before the first run, %.0f ms after the last", r.probeStart, r.probeEnd)
	if pg := r.postgres; pg != nil && pg.Server != "" {
		where := pg.Where
		if pg.Local {
			where += "`, on this machine"
		} else {
			where += "`"
		}
		p("- %s; at `%s", pg.Server, where)
	}
	p("")
	p("The machine may be shared and noisy: compare figures and ratios measured in the same run, not across")
	p("runs. Client, server, agent and sshd (and PostgreSQL, in its runs) all share the same cores. Nor is")
	p("its speed the same from one run to the next: the same code has measured three times slower in one")
	p("run than in another (`policy BenchmarkEvaluate` 543 against 1,600 ns/op), which the speed probe")
	p("shows; absolute figures, such as pushes per second, move with it, while ratios within a run hold.")
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
		if len(h.GoFloor) > 0 {
			p("| … floor: an empty Go program (`func main() {}`, built as the helper is) exec'd the same way (Go's own start-up) | %d | %s | %s | | |",
				len(h.GoFloor), benchrig.MS(h.GoFloor.Median()), benchrig.MS(h.GoFloor.P99()))
		}
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
	p("  floors show what process start-up alone costs: for the whole postern binary, for any Go program (an")
	p("  empty one, static like the helper; the Go runtime sets up its heap, threads and signals before main),")
	p("  and for the smallest program there is.")
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
		p("  under that load. %d clients keep enough calls in flight that the cores do not idle while calls wait", o.workers)
		p("  for their audit batch to commit (with 32, about a fifth of the machine stayed idle).")
		p("  CPU used during the run, per push: server %s, agent %s, load generator %s",
			perPush(s.serverCPU(), s.Pushes), perPush(s.CPU["agent"], s.Pushes), perPush(s.CPU["client"], s.Pushes))
		p("  (%s of the machine's %d cores in all). The server alone, given the %d cores, would thus serve about", busyShare(s), runtime.NumCPU(), runtime.NumCPU())
		p("  %s pushes/s; the measured rate is lower because the load generator and the agent run on the same cores.", capacity(s.serverCPU(), s.Pushes))
		if len(s.Errors) > 0 {
			p("  Failures: %s.", benchrig.FormatErrors(s.Errors))
		}
	}
	if s := r.ssh; s != nil {
		p("- `postern ssh` against plain ssh: %d logins each after 2 warm-ups, interleaved. `postern ssh` runs", len(s.Postern))
		p("  as `%s` (a new process: SDK set-up, TLS handshake, a new Ed25519 key, then", s.PosternCmd)
		p("  GetInstanceConnectInfo and SendSSHPublicKey at once, then OpenSSH's `ssh`). Plain ssh runs as `%s`;", s.PlainCmd)
		p("  its key is pushed before each run, outside the timing, since this sshd knows no other keys.")
	}
	r.writePostgres(p)
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

// writePostgres is the section of issue 6: sustained pushes on SQLite, on
// PostgreSQL with one replica, and with two.
func (r *report) writePostgres(p func(format string, args ...any)) {
	pg := r.postgres
	if pg == nil {
		return
	}
	o := r.opts
	p("")
	p("## Sustained key pushes: SQLite, PostgreSQL, two replicas (issue 6)")
	p("")
	if pg.Skipped != "" {
		p("**Not measured on PostgreSQL in this run:** the database at `%s` (`%s`; default `%s`) could not be", pg.Where, postgresEnv, redactURL(defaultPostgres))
		p("reached: %s. Only SQLite's figure was taken, in the table above. Point `%s` at a", oneLine(pg.Skipped), postgresEnv)
		p("PostgreSQL database (its user may create schemas) and run `%s` again.", o.command)
		return
	}
	p("The sustained run of the table above — %d concurrent SDK clients over %d access keys, one agent, bounded by", o.workers, o.users)
	p("%d pushes or %s — on three set-ups, each a rig of its own (servers, agent, sshd) started after the", o.sustainedMax, o.sustainedFor)
	p("previous one stopped: SQLite with one server (the run above); `postern server --store postgres://…` with one")
	p("replica; and two replicas on that store, the second started from a data directory holding only the first's")
	p("`secrets.key` (it takes the other keys from the database), the agent registered with both URLs (`--server A,B`)")
	p("and connected to A, and the clients spread over them, half on each. A push that reaches B is routed to A")
	p("through the database (B looks up the replica holding the agent's session and NOTIFYs it; A pushes over the")
	p("agent's WebSocket and NOTIFYs the acknowledgement back), and answers only on that acknowledgement. Each")
	p("PostgreSQL set-up has a fresh schema, dropped afterwards.")
	p("")
	p("| store | replicas | clients | pushes/s | pushes | failed | median | p99 | ratio |")
	p("|---|---|---|---:|---:|---:|---:|---:|---|")
	base := r.sustained
	if base != nil {
		p("| SQLite (embedded) | 1 | %d | **%.0f** | %d in %.1f s | %d | %s | %s | |", base.Workers, base.rate(), base.Pushes, base.Elapsed.Seconds(),
			benchrig.ErrorCount(base.Errors), benchrig.MS(base.Latency.Median()), benchrig.MS(base.Latency.P99()))
	}
	// Each PostgreSQL row against the row above it.
	prev, prevName := base, "SQLite"
	for _, run := range pg.Runs {
		name := fmt.Sprintf("PG-%d", run.Config.Replicas)
		replicas := fmt.Sprint(run.Config.Replicas)
		if run.Config.Replicas > 1 {
			replicas += ", agent on A"
		}
		s := run.Sustained
		if run.Err != nil || s == nil {
			p("| PostgreSQL | %s | | **failed**: %s | | | | | |", replicas, oneLine(fmt.Sprint(run.Err)))
			prev = nil
			continue
		}
		ratio := ""
		if prev != nil && prev.rate() > 0 {
			ratio = fmt.Sprintf("%s / %s: **%.2f×**", name, prevName, s.rate()/prev.rate())
		}
		p("| PostgreSQL | %s | %s | **%.0f** | %d in %.1f s | %d | %s | %s | %s |", replicas, clientSpread(s), s.rate(), s.Pushes, s.Elapsed.Seconds(),
			benchrig.ErrorCount(s.Errors), benchrig.MS(s.Latency.Median()), benchrig.MS(s.Latency.P99()), ratio)
		prev, prevName = s, name
	}
	p("")
	p("| CPU per push | servers | agent | PostgreSQL | load generator | all, share of the %d cores |", runtime.NumCPU())
	p("|---|---:|---:|---:|---:|---:|")
	if base != nil {
		p("| SQLite | %s | %s | | %s | %s |", perPush(base.serverCPU(), base.Pushes), perPush(base.CPU["agent"], base.Pushes), perPush(base.CPU["client"], base.Pushes), busyShare(base))
	}
	for _, run := range pg.Runs {
		s := run.Sustained
		if s == nil {
			continue
		}
		servers := perPush(s.serverCPU(), s.Pushes)
		if s.Replicas > 1 {
			var parts []string
			for i := range s.Replicas {
				parts = append(parts, replicaLetter(i)+" "+perPush(s.CPU[replicaProc(i)], s.Pushes))
			}
			servers += " (" + strings.Join(parts, ", ") + ")"
		}
		pgCPU := "not visible"
		if pg.Local {
			pgCPU = perPush(s.CPU["postgres"], s.Pushes)
		}
		p("| PG-%d | %s | %s | %s | %s | %s |", run.Config.Replicas, servers, perPush(s.CPU["agent"], s.Pushes), pgCPU, perPush(s.CPU["client"], s.Pushes), busyShare(s))
	}
	p("")
	p("How the figures are taken and what they say:")
	p("")
	p("- Every run: %d warm-up pushes per client, then the clients push back to back until the bound; the latency", warmupPushes)
	p("  columns are per call under that load. Client w signs with access key (w / replicas) mod %d and calls", o.users)
	p("  replica w mod replicas, each replica with clients of its own (kept-alive TLS connections to it).")
	for _, run := range pg.Runs {
		if s := run.Sustained; s != nil && s.Replicas > 1 {
			var parts []string
			for i, v := range s.Via {
				what := "the agent's replica"
				if i > 0 {
					what = "routed to A"
				}
				parts = append(parts, fmt.Sprintf("through %s (%s) %d calls, median %s, p99 %s", replicaLetter(i), what, len(v), benchrig.MS(v.Median()), benchrig.MS(v.P99())))
			}
			p("- Two replicas: %s.", strings.Join(parts, "; "))
		}
		if s := run.Sustained; s != nil && s.DB != nil && s.Pushes > 0 {
			n := float64(s.Pushes)
			p("- PG-%d, PostgreSQL's own counters over the run (about: its backends report them each second): per push,", run.Config.Replicas)
			p("  %.2f transactions committed and %.2f rolled back in the database, and, for the whole server, %.2f WAL", float64(s.DB.Commits)/n, float64(s.DB.Rollbacks)/n, float64(s.DB.WALWrites)/n)
			p("  writes and %.2f WAL flushes (fsync).", float64(s.DB.WALSync)/n)
		}
		if s := run.Sustained; s != nil && len(s.Errors) > 0 {
			p("  PG-%d failures: %s.", run.Config.Replicas, benchrig.FormatErrors(s.Errors))
		}
	}
	p("- The PostgreSQL server is the one named under Machine, with its own settings (a commit waits for the WAL")
	p("  to reach the disk when `fsync` and `synchronous_commit` are on); the servers open their default pools on it.")
	if pg.Local {
		p("  Its CPU column is the sum over its processes on this machine (`postgres`: the backends serving the")
		p("  replicas, the WAL writer, the checkpointer, …) alive at the end of the run.")
	} else {
		p("  Its processes are not visible from this machine, so its CPU is not counted.")
	}
	p("- All replicas, PostgreSQL, the agent and the clients share this machine's %d cores: a second replica adds no", runtime.NumCPU())
	p("  hardware here, so PG-2 / PG-1 shows what routing half the pushes through the database costs on the same")
	p("  CPU, not how replicas on hosts of their own scale.")
	p("- SQLite's run comes last on its rig, after the other keyless figures (about %d earlier pushes); each", r.earlierPushes())
	p("  PostgreSQL run is the first on a fresh rig and database.")
}

// earlierPushes is about how many pushes the SQLite rig served before its
// sustained run.
func (r *report) earlierPushes() int {
	n := 0
	if r.helper != nil {
		n += r.helper.Records + 1
	}
	if r.push != nil {
		n += 50 + len(r.push.RTT)
	}
	if r.ssh != nil {
		n += 2 * (len(r.ssh.Postern) + 2)
	}
	return n
}

// clientSpread says how the clients were spread over the replicas.
func clientSpread(s *sustainedResult) string {
	if s.Replicas <= 1 {
		return fmt.Sprint(s.Workers)
	}
	var parts []string
	for i := range s.Replicas {
		n := s.Workers / s.Replicas
		if i < s.Workers%s.Replicas {
			n++
		}
		parts = append(parts, fmt.Sprintf("%d on %s", n, replicaLetter(i)))
	}
	return strings.Join(parts, ", ")
}

// busyShare is the CPU time of every process measured over the run's
// wall-clock time on all cores.
func busyShare(s *sustainedResult) string {
	if s.Elapsed <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(s.totalCPU())/float64(s.Elapsed)/float64(runtime.NumCPU()))
}

// oneLine makes an error message fit a table cell.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
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
