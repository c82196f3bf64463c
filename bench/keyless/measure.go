package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"

	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/bench/internal/benchrig"
	"github.com/postern-dev/postern/client"
)

// Every loop is bounded twice: by its count and by a time budget, so that
// a slow or wedged machine ends the run with what it has instead of
// hanging (the report shows the count actually measured).

// pusher pushes keys with the AWS SDK's own EC2 Instance Connect client.
type pusher struct {
	c        *ec2instanceconnect.Client
	instance string
}

func newPusher(cfg aws.Config, instance string) *pusher {
	return &pusher{c: ec2instanceconnect.NewFromConfig(cfg), instance: instance}
}

func (p *pusher) push(ctx context.Context, osUser, key string) error {
	out, err := p.c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(p.instance), InstanceOSUser: aws.String(osUser), SSHPublicKey: aws.String(key),
	})
	if err == nil && !out.Success {
		err = errors.New("SendSSHPublicKey answered Success=false")
	}
	return err
}

// helperResult is the sshd helper's latency, as sshd sees it (a fork and
// exec of the installed binary as the helper user) and, for comparison,
// the in-process work alone (socket query and verification).
type helperResult struct {
	Records      int    // live records the agent holds for the user
	Command      string // the helper sshd runs, e.g. postern-authorized-keys
	Exec, InProc benchrig.Samples
	// Process start-up alone, as the helper user: /bin/true, an empty Go
	// program (when make bench built one), and the postern binary
	// printing its version.
	True, GoFloor, Version benchrig.Samples
	WrongAnswers           int
	SyslogPresent          bool
}

// measureHelper runs the installed helper (postern-authorized-keys, or
// `postern authorized-keys`) with `--config … USER FP` n times,
// as sshd would, against the live agent holding a few records for USER.
// goFloor, when not empty, is an empty Go program to time the same way.
func measureHelper(ctx context.Context, r *rig, n int, goFloor string, budget time.Duration) (*helperResult, error) {
	p := newPusher(r.users[0], r.instance)
	const records = 3
	var want, fp string
	for i := range records {
		line, f, err := newKey("")
		if err != nil {
			return nil, err
		}
		if err := p.push(ctx, loginUser, line); err != nil {
			return nil, fmt.Errorf("push a key for the helper benchmark: %w", err)
		}
		if i == 1 {
			want, fp = strings.Fields(line)[1], f
		}
	}
	// A record for another user: the agent holds more than it answers.
	if line, _, err := newKey(""); err == nil {
		_ = p.push(ctx, "ubuntu", line)
	}
	res := &helperResult{Records: records, Command: filepath.Base(strings.Join(r.helperCmd, " "))}
	_, err := os.Stat("/dev/log")
	res.SyslogPresent = err == nil

	run := func() (time.Duration, bool, error) {
		var out bytes.Buffer
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, r.helperCmd[0], append(r.helperCmd[1:], "--config", r.helperConfig, loginUser, fp)...)
		// What sshd gives an AuthorizedKeysCommand: the helper user and
		// an almost empty environment.
		cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}
		cmd.Dir = "/"
		cmd.Stdout = &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.helperUID), Gid: uint32(r.helperGID)}}
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		ok := err == nil && len(lines) == 1 && strings.HasPrefix(lines[0], "expiry-time=") && strings.Contains(lines[0], want)
		return d, ok, err
	}
	// Warm the page cache and check the answer once.
	for range 10 {
		if _, ok, err := run(); !ok {
			return nil, fmt.Errorf("the helper did not print the pushed key (err %v); agent: %s", err, r.procs.Get("agent").Tail())
		}
	}
	deadline := time.Now().Add(budget)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		d, ok, _ := run()
		res.Exec = append(res.Exec, d)
		if !ok {
			res.WrongAnswers++
		}
	}

	floor := func(path string, args ...string) benchrig.Samples {
		var out benchrig.Samples
		deadline := time.Now().Add(budget / 2)
		for i := 0; i < n/3 && time.Now().Before(deadline); i++ {
			cmd := exec.CommandContext(ctx, path, args...)
			cmd.Env, cmd.Dir = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}, "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.helperUID), Gid: uint32(r.helperGID)}}
			start := time.Now()
			if cmd.Run() == nil {
				out = append(out, time.Since(start))
			}
		}
		return out
	}
	res.True = floor("/bin/true")
	if goFloor != "" {
		// Installed beside the helper, root-owned, as the helper is.
		b, err := os.ReadFile(goFloor)
		if err != nil {
			return nil, err
		}
		installed := filepath.Join(r.helperDir, "gofloor")
		if err := os.WriteFile(installed, b, 0o755); err != nil {
			return nil, err
		}
		res.GoFloor = floor(installed)
	}
	res.Version = floor(r.helperPath, "version")

	hc, err := agent.ReadHelperConfig(r.helperConfig)
	if err != nil {
		return nil, err
	}
	deadline = time.Now().Add(budget)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		start := time.Now()
		keys, _, err := agent.AuthorizedKeys(hc, loginUser, fp, time.Now(), 4*time.Second)
		res.InProc = append(res.InProc, time.Since(start))
		if err != nil || len(keys) != 1 {
			res.WrongAnswers++
		}
	}
	return res, nil
}

// pushResult is the round trip of SendSSHPublicKey, one call at a time.
type pushResult struct {
	RTT    benchrig.Samples
	Errors int
}

// measurePushRTT pushes n keys one after the other with the SDK client of
// one IAM user and times each call, which returns only once the agent has
// acknowledged the signed record and the call is audited.
func measurePushRTT(ctx context.Context, r *rig, n int, budget time.Duration) (*pushResult, error) {
	p := newPusher(r.users[0], r.instance)
	keys, err := keyLines(8)
	if err != nil {
		return nil, err
	}
	for i := range 50 { // TLS connection, SDK caches, server caches
		if err := p.push(ctx, "ec2-user", keys[i%len(keys)]); err != nil {
			return nil, fmt.Errorf("push: %w", err)
		}
	}
	res := &pushResult{}
	deadline := time.Now().Add(budget)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		start := time.Now()
		err := p.push(ctx, "ec2-user", keys[i%len(keys)])
		res.RTT = append(res.RTT, time.Since(start))
		if err != nil {
			res.Errors++
		}
	}
	return res, nil
}

// sustainedResult is the throughput of concurrent pushes.
type sustainedResult struct {
	Workers, Keys int
	Replicas      int // servers the clients are spread over
	Pushes        int
	Errors        map[string]int
	Elapsed       time.Duration
	Latency       benchrig.Samples
	Via           []benchrig.Samples       // latencies of the calls through each replica, A first
	CPU           map[string]time.Duration // per process (or group of processes), over the run
	DB            *pgCounters              // PostgreSQL's counters over the run, when known
}

func (s *sustainedResult) rate() float64 { return float64(s.Pushes) / s.Elapsed.Seconds() }

// serverCPU is the CPU time of all replicas.
func (s *sustainedResult) serverCPU() time.Duration {
	var d time.Duration
	for k, v := range s.CPU {
		if strings.HasPrefix(k, "server") {
			d += v
		}
	}
	return d
}

// totalCPU is the CPU time of every process measured.
func (s *sustainedResult) totalCPU() time.Duration {
	var d time.Duration
	for _, v := range s.CPU {
		d += v
	}
	return d
}

// cpuSnapshot is the CPU time used so far by the rig's servers and agent,
// this process (the load generator) and, on PostgreSQL, the database's
// processes on this machine.
func (r *rig) cpuSnapshot() map[string]time.Duration {
	m := map[string]time.Duration{"agent": r.procs.Get("agent").CPUTime(), "client": benchrig.ProcCPU(os.Getpid())}
	for _, s := range r.srvs {
		m[s.Proc.Name] = s.Proc.CPUTime()
	}
	if r.cfg.Store != "" {
		m["postgres"] = benchrig.CommandCPU("postgres")
	}
	return m
}

// warmupPushes is how many pushes each client of the sustained run makes
// before it.
const warmupPushes = 10

// measureSustained runs workers goroutines that push back to back, spread
// over the bench users' access keys and over the rig's replicas (worker w
// calls replica w mod replicas), until maxPushes calls have been made or
// the duration has passed. Every call is authenticated, authorized,
// signed, delivered to the agent and acknowledged, and audited (group
// commit) before it answers; a call to a replica other than the agent's
// is routed to the agent's replica through the database first.
func measureSustained(ctx context.Context, r *rig, workers, maxPushes int, duration time.Duration) (*sustainedResult, error) {
	keys, err := keyLines(64)
	if err != nil {
		return nil, err
	}
	// pushers[replica][user]
	pushers := make([][]*pusher, len(r.srvs))
	for i, srv := range r.srvs {
		for _, k := range r.userKeys {
			cfg, err := srv.AWSConfig(k[0], k[1], 64)
			if err != nil {
				return nil, err
			}
			pushers[i] = append(pushers[i], newPusher(cfg, r.instance))
		}
	}
	// Worker w's replica and client: with one replica, user w mod users.
	pick := func(w int) (int, *pusher) {
		via := w % len(pushers)
		return via, pushers[via][(w/len(pushers))%len(pushers[via])]
	}
	// Warm up every client's connections.
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			_, p := pick(w)
			for i := range warmupPushes {
				_ = p.push(ctx, "ec2-user", keys[(w+i)%len(keys)])
			}
		})
	}
	wg.Wait()

	res := &sustainedResult{Workers: workers, Keys: len(r.userKeys), Replicas: len(r.srvs), Errors: map[string]int{},
		Via: make([]benchrig.Samples, len(r.srvs)), CPU: map[string]time.Duration{}}
	var (
		issued  atomic.Int64
		mu      sync.Mutex
		lat     = make(benchrig.Samples, 0, maxPushes)
		cpu0    = r.cpuSnapshot()
		runCtx  context.Context
		stopRun context.CancelFunc
	)
	var db0 pgCounters
	dbKnown := false
	if r.cfg.Store != "" {
		db0, dbKnown = readPGCounters(ctx, r.cfg.Store)
	}
	runCtx, stopRun = context.WithTimeout(ctx, duration)
	defer stopRun()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			via, p := pick(w)
			local := make(benchrig.Samples, 0, maxPushes/workers+1)
			errs := map[string]int{}
			for runCtx.Err() == nil && issued.Add(1) <= int64(maxPushes) {
				t := time.Now()
				// The calls themselves run on ctx: the time limit stops
				// new calls, it does not cut one short.
				err := p.push(ctx, "ec2-user", keys[int(issued.Load())%len(keys)])
				local = append(local, time.Since(t))
				if err != nil {
					code := client.ErrorCode(err)
					if code == "" {
						code = "transport: " + client.Clean(err).Error()
					}
					errs[code]++
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			res.Via[via] = append(res.Via[via], local...)
			for k, v := range errs {
				res.Errors[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	for k, v := range r.cpuSnapshot() {
		// max: a database process that ended during the run takes its
		// time out of the sum.
		res.CPU[k] = max(v-cpu0[k], 0)
	}
	if dbKnown {
		if db1, ok := readPGCounters(ctx, r.cfg.Store); ok {
			d := db1.sub(db0)
			res.DB = &d
		}
	}
	res.Pushes = len(lat)
	res.Latency = lat
	return res, nil
}

// sshResult compares a whole `postern ssh` login with plain ssh to the
// same sshd.
type sshResult struct {
	Postern, Plain benchrig.Samples
	PosternCmd     string
	PlainCmd       string
}

// measureSSH times `postern ssh INSTANCE -- true` and `ssh -i key -p PORT
// USER@127.0.0.1 -- true`, interleaved so that both see the same machine.
// Both logins go through sshd's AuthorizedKeysCommand (sshd has no other
// keys); plain ssh's key is pushed before each of its runs, outside the
// timing, while postern ssh pushes its own ephemeral key inside it.
func measureSSH(ctx context.Context, r *rig, n int, budget time.Duration) (*sshResult, error) {
	keyFile := filepath.Join(r.dir, "home", "id_plain")
	line, _, err := newKey(keyFile)
	if err != nil {
		return nil, err
	}
	p := newPusher(r.admin, r.instance)
	port := strconv.Itoa(r.sshPort)
	posternArgs := []string{"ssh", "--os-user", loginUser, r.instance, "--", "true"}
	plainArgs := []string{"-i", keyFile, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + r.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-p", port, loginUser + "@127.0.0.1", "--", "true"}
	res := &sshResult{
		PosternCmd: "postern ssh --os-user " + loginUser + " INSTANCE-ID -- true",
		PlainCmd:   "ssh -i KEY -o IdentitiesOnly=yes -o UserKnownHostsFile=KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -p PORT " + loginUser + "@127.0.0.1 -- true",
	}
	timed := func(path string, args []string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, path, args...)
		cmd.Env = r.env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if err != nil {
			return d, fmt.Errorf("%s %s: %v: %s", filepath.Base(path), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return d, nil
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return nil, err
	}
	one := func(record bool) error {
		d, err := timed(r.cfg.Postern, posternArgs)
		if err != nil {
			return err
		}
		if record {
			res.Postern = append(res.Postern, d)
		}
		if err := p.push(ctx, loginUser, line); err != nil {
			return fmt.Errorf("push the plain ssh key: %w", err)
		}
		if d, err = timed(sshBin, plainArgs); err != nil {
			return err
		}
		if record {
			res.Plain = append(res.Plain, d)
		}
		return nil
	}
	for range 2 {
		if err := one(false); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(budget)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		if err := one(true); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// keyLines makes n public key lines to push.
func keyLines(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		line, _, err := newKey("")
		if err != nil {
			return nil, err
		}
		out[i] = line
	}
	return out, nil
}
