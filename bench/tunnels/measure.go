package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
	"github.com/postern-dev/postern/opentunnel"
	"github.com/postern-dev/postern/tunnel"
)

// Every loop is bounded twice: by its count and by a time budget, so that
// a slow or wedged machine ends the run with what it has instead of
// hanging (the report shows the count actually measured).

// Paths compared for bulk throughput.
const (
	pathDirect     = "direct TCP"
	pathTunnel     = "Postern tunnel"
	pathSSH        = "OpenSSH bastion"
	pathWebsockify = "websockify"
	pathTLSRelay   = "TLS relay"
)

// bulkResult is one path's bulk transfers: each round uploads and then
// downloads the same number of bytes on a fresh connection.
type bulkResult struct {
	Path     string
	Bytes    int64 // per transfer
	Up, Down []time.Duration
	Busy     []float64 // the machine's CPU busy share over each round's transfers
}

// busy is the median round's CPU share.
func (r *bulkResult) busy() float64 {
	if len(r.Busy) == 0 {
		return 0
	}
	s := append([]float64(nil), r.Busy...)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds() / 1e6
}

func medianDuration(ds []time.Duration) time.Duration { return benchrig.Samples(ds).Median() }

// UpMBps, DownMBps and BothMBps are of the median round.
func (r *bulkResult) UpMBps() float64   { return mbps(r.Bytes, medianDuration(r.Up)) }
func (r *bulkResult) DownMBps() float64 { return mbps(r.Bytes, medianDuration(r.Down)) }

// BothMBps is the bytes both ways over the time both ways took.
func (r *bulkResult) BothMBps() float64 {
	return mbps(2*r.Bytes, medianDuration(r.Up)+medianDuration(r.Down))
}

// measureBulk moves n bytes up and n bytes down through every path, the
// paths interleaved round by round so that each sees the same machine.
func measureBulk(ctx context.Context, b *testbed, dnsName string, n int64, rounds int, budget time.Duration) ([]*bulkResult, error) {
	payload := make([]byte, chunk)
	if _, err := rand.Read(payload); err != nil {
		return nil, err
	}
	paths := []struct {
		name string
		open func(context.Context) (stream, error)
	}{
		{pathDirect, b.directStream},
		{pathTunnel, func(ctx context.Context) (stream, error) { return b.tunnelStream(ctx, dnsName) }},
		{pathSSH, b.sshStream},
		{pathWebsockify, b.websockifyStream},
		{pathTLSRelay, b.tlsRelayStream},
	}
	res := make([]*bulkResult, len(paths))
	for i, p := range paths {
		res[i] = &bulkResult{Path: p.name, Bytes: n}
	}
	for round := range rounds + 1 { // round 0 warms up
		for i, p := range paths {
			octx, cancel := context.WithTimeout(ctx, 30*time.Second)
			s, err := p.open(octx)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%s: open: %w", p.name, err)
			}
			size := n
			if round == 0 {
				size = min(n, 32<<20)
			}
			cpu := readMachineCPU()
			up, err := transfer(s, opUpload, size, payload, budget)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			down, err := transfer(s, opDownload, size, payload, budget)
			busy := cpu.busySince()
			s.Close()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			if round > 0 {
				res[i].Up = append(res[i].Up, up)
				res[i].Down = append(res[i].Down, down)
				res[i].Busy = append(res[i].Busy, busy)
				progress("  round %d %-16s up %7.1f MB/s, down %7.1f MB/s, CPU %3.0f%%", round, p.name, mbps(size, up), mbps(size, down), 100*busy)
			}
		}
	}
	return res, nil
}

// latencyResult is the time from a presigned URL to the target's first
// byte through a tunnel.
type latencyResult struct {
	Mode    string
	Open    benchrig.Samples
	Presign benchrig.Samples
	Errors  map[string]int
}

// measureOpenLatency opens n tunnels one after the other: each is presigned
// (timed apart), dialled on a new TCP and TLS connection, authorized by the
// server, connected to the target, and done when the target's greeting
// arrives. Each is then closed normally, outside the timing.
func measureOpenLatency(ctx context.Context, b *testbed, mode, dnsName string, n int, budget time.Duration) (*latencyResult, error) {
	res := &latencyResult{Mode: mode, Errors: map[string]int{}}
	one := func() (time.Duration, time.Duration, error) {
		t0 := time.Now()
		u, err := b.presign(ctx, dnsName)
		if err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ws, err := opentunnel.Dial(octx, u, b.tls)
		if err != nil {
			return 0, 0, err
		}
		defer ws.Close(tunnel.StatusNormalClosure, "")
		if err := firstByte(octx, ws); err != nil {
			return 0, 0, err
		}
		return time.Since(t1), t1.Sub(t0), nil
	}
	for range 10 { // connections, caches, the server's and the endpoint's
		if _, _, err := one(); err != nil {
			return nil, fmt.Errorf("%s mode: %w", mode, err)
		}
	}
	deadline := time.Now().Add(budget)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		open, sign, err := one()
		if err != nil {
			res.Errors[errorKey(err)]++
			continue
		}
		res.Open = append(res.Open, open)
		res.Presign = append(res.Presign, sign)
	}
	return res, nil
}

// firstByte reads the target's greeting from a tunnel.
func firstByte(ctx context.Context, ws *tunnel.WebSocket) error {
	typ, data, err := ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("no first byte from the target: %w", err)
	}
	if typ != tunnel.MessageBinary || len(data) != 1 || data[0] != greeting {
		return fmt.Errorf("the tunnel's first frame is %v %q, not the target's greeting", typ, data)
	}
	return nil
}

// errorKey groups failures for the report.
func errorKey(err error) string {
	var he *opentunnel.HandshakeError
	if errors.As(err, &he) {
		return fmt.Sprintf("HTTP %d %s", he.StatusCode, he.ErrorCode)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// rateResult is tunnels opened per second by concurrent clients.
type rateResult struct {
	Workers int
	Opened  int
	Errors  map[string]int
	Elapsed time.Duration
	Latency benchrig.Samples
	CPU     map[string]time.Duration // per process, over the run
}

func (r *rateResult) rate() float64 { return float64(r.Opened) / r.Elapsed.Seconds() }

// measureOpenRate runs workers that open tunnels back to back (presign,
// dial, first byte, normal close) until max tunnels have been opened or
// the duration has passed.
func measureOpenRate(ctx context.Context, b *testbed, dnsName string, workers, maxOpens int, duration time.Duration, endpoint *benchrig.Child) *rateResult {
	res := &rateResult{Workers: workers, Errors: map[string]int{}, CPU: map[string]time.Duration{}}
	server := b.procs.Get("server")
	cpu0 := map[string]time.Duration{"server": server.CPUTime(), "endpoint": endpoint.CPUTime(), "client": benchrig.ProcCPU(os.Getpid())}
	var (
		issued atomic.Int64
		mu     sync.Mutex
		wg     sync.WaitGroup
	)
	runCtx, stop := context.WithTimeout(ctx, duration)
	defer stop()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var lat benchrig.Samples
			errs := map[string]int{}
			for runCtx.Err() == nil && issued.Add(1) <= int64(maxOpens) {
				t := time.Now()
				err := func() error {
					octx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					ws, err := b.openTunnel(octx, dnsName)
					if err != nil {
						return err
					}
					defer ws.Close(tunnel.StatusNormalClosure, "")
					return firstByte(octx, ws)
				}()
				if err != nil {
					errs[errorKey(err)]++
					continue
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			res.Latency = append(res.Latency, lat...)
			for k, v := range errs {
				res.Errors[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Opened = len(res.Latency)
	res.CPU["server"] = server.CPUTime() - cpu0["server"]
	res.CPU["endpoint"] = endpoint.CPUTime() - cpu0["endpoint"]
	res.CPU["client"] = benchrig.ProcCPU(os.Getpid()) - cpu0["client"]
	return res
}

// memoryResult is the endpoint's memory with many idle tunnels open.
type memoryResult struct {
	Want, Opened int
	Errors       map[string]int
	Ramp         time.Duration // to open them all
	Workers      int
	Before       int64 // endpoint RSS, bytes, settled, no tunnel open
	After        int64 // with Opened idle tunnels, settled
	Alive        int   // tunnels still open when After was read
	Settle       time.Duration
	// The runtime's account (gctrace) at the last collection before the
	// ramp and the first one after it, when there was one in time.
	GCBefore, GCAfter gcTrace
	GCSeen            bool
}

// heapPerTunnel is the growth of the live heap and stacks per tunnel,
// by the runtime's account.
func (m *memoryResult) heapPerTunnel() float64 {
	if !m.GCSeen || m.Opened == 0 {
		return 0
	}
	d := (m.GCAfter.LiveMB + m.GCAfter.Stacks) - (m.GCBefore.LiveMB + m.GCBefore.Stacks)
	return float64(d) * (1 << 20) / float64(m.Opened)
}

func (m *memoryResult) perTunnel() float64 {
	if m.Opened == 0 {
		return 0
	}
	return float64(m.After-m.Before) / float64(m.Opened)
}

// measureIdleMemory opens want tunnels to the idle target through the
// endpoint whose process is pid, keeps them open (each with a reader
// that answers the endpoint's pings), and reads the endpoint's RSS
// before and after, each once it has settled.
func measureIdleMemory(ctx context.Context, b *testbed, dnsName string, ep *benchrig.Child, pid, want, workers int, budget time.Duration) (*memoryResult, error) {
	res := &memoryResult{Want: want, Workers: workers, Errors: map[string]int{}}
	// Warm up: the handshake and pipe code paths, TLS session state,
	// the HTTP server's pools.
	for range 50 {
		ws, err := b.openTunnel(ctx, dnsName)
		if err != nil {
			return nil, err
		}
		if err := firstByte(ctx, ws); err != nil {
			return nil, err
		}
		ws.Close(tunnel.StatusNormalClosure, "")
	}
	var err error
	if res.Before, err = settledRSS(ctx, pid, 20*time.Second); err != nil {
		return nil, err
	}
	res.GCBefore, _ = lastGC(ep.Log)

	held := make([]*tunnel.WebSocket, want)
	var (
		next   atomic.Int64
		alive  atomic.Int64
		mu     sync.Mutex
		wg     sync.WaitGroup
		readWG sync.WaitGroup
	)
	holdCtx, release := context.WithCancel(context.WithoutCancel(ctx))
	defer release()
	rampCtx, stopRamp := context.WithTimeout(ctx, budget)
	defer stopRamp()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for rampCtx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= want {
					return
				}
				octx, cancel := context.WithTimeout(rampCtx, 30*time.Second)
				ws, err := b.openTunnel(octx, dnsName)
				if err == nil {
					err = firstByte(octx, ws)
					if err != nil {
						ws.CloseNow()
					}
				}
				cancel()
				if err != nil {
					mu.Lock()
					res.Errors[errorKey(err)]++
					mu.Unlock()
					continue
				}
				held[i] = ws
				alive.Add(1)
				// Read until the tunnel ends: the endpoint's pings are
				// answered only while a read is in progress.
				readWG.Go(func() {
					defer alive.Add(-1)
					for {
						if _, _, err := ws.Read(holdCtx); err != nil {
							return
						}
					}
				})
			}
		})
	}
	wg.Wait()
	res.Ramp = time.Since(start)
	for _, ws := range held {
		if ws != nil {
			res.Opened++
		}
	}
	progress("  %d tunnels open after %.1f s; waiting for the endpoint's next GC (at most %s) and a settled RSS", res.Opened, res.Ramp.Seconds(), gcWait)
	settleStart := time.Now()
	// The runtime forces a collection every two minutes at the latest;
	// the first one after the ramp sees the tunnels idle.
	rampGC, _ := lastGC(ep.Log)
	for deadline := time.Now().Add(gcWait); time.Now().Before(deadline); {
		if g, ok := lastGC(ep.Log); ok && g.N > rampGC.N {
			res.GCAfter, res.GCSeen = g, true
			break
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
	if res.After, err = settledRSS(ctx, pid, 30*time.Second); err != nil {
		return nil, err
	}
	res.Settle = time.Since(settleStart)
	res.Alive = int(alive.Load())

	// Close them all normally, a bounded number at a time.
	closeCtx, stopClose := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
	defer stopClose()
	sem := make(chan struct{}, 64)
	for _, ws := range held {
		if ws == nil {
			continue
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if closeCtx.Err() != nil {
				ws.CloseNow()
				return
			}
			ws.Close(tunnel.StatusNormalClosure, "")
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	release()
	readWG.Wait()
	return res, nil
}

// gcWait bounds the wait for the endpoint's first collection after the
// ramp: a little more than the runtime's forced-GC period.
const gcWait = 130 * time.Second

// settledRSS reads a process's RSS every half second until five readings
// in a row lie within 1% of each other, or the budget runs out, and
// returns the median of the last five.
func settledRSS(ctx context.Context, pid int, budget time.Duration) (int64, error) {
	var last []int64
	deadline := time.Now().Add(budget)
	for {
		v, err := benchrig.ProcRSS(pid)
		if err != nil {
			return 0, err
		}
		last = append(last, v)
		if len(last) > 5 {
			last = last[1:]
		}
		if len(last) == 5 {
			s := append([]int64(nil), last...)
			sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
			if float64(s[4]-s[0]) <= 0.01*float64(s[2]) || time.Now().After(deadline) {
				return s[2], nil
			}
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return 0, err
		}
	}
}
