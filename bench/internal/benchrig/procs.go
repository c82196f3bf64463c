// Package benchrig holds what the benchmark programs under bench/ share: the
// child processes they start (each with a log file, stopped in reverse
// order, killed if the benchmark dies), `postern server` run as one of
// them with the admin's SDK configuration, and latency samples.
package benchrig

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Child is a long-running process a benchmark started.
type Child struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // file holding its output
	done chan struct{}
	// stopped says Stop ended it, not a failure.
	stopped atomic.Bool
}

// Tail returns the end of the child's output, for error messages.
func (c *Child) Tail() string {
	b, _ := os.ReadFile(c.Log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Exited reports whether the child has ended.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Stop sends SIGTERM, waits up to grace, then kills. It returns at once
// when the child has ended already.
func (c *Child) Stop(grace time.Duration) {
	c.stopped.Store(true)
	if c.Exited() {
		return
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = c.Cmd.Process.Kill()
		<-c.done
	}
}

// Procs are the children of one run; their logs go to Dir.
type Procs struct {
	Dir  string
	list []*Child
}

// Spawn starts a child whose output goes to Dir/name.log. It gets
// SIGKILL if the benchmark dies. env nil means the benchmark's own.
func (p *Procs) Spawn(name string, env []string, path string, args ...string) (*Child, error) {
	logPath := filepath.Join(p.Dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		lf.Close()
		close(c.done)
	}()
	p.list = append(p.list, c)
	return c, nil
}

// Get returns the last child started under name, or nil.
func (p *Procs) Get(name string) *Child {
	for i := len(p.list) - 1; i >= 0; i-- {
		if p.list[i].Name == name {
			return p.list[i]
		}
	}
	return nil
}

// All returns the children in the order they started.
func (p *Procs) All() []*Child { return p.list }

// FirstExited returns a child that has ended without being stopped, or
// nil: a set-up loop calls it to fail early instead of waiting out its
// deadline.
func (p *Procs) FirstExited() *Child {
	for _, c := range p.list {
		if c.Exited() && !c.stopped.Load() {
			return c
		}
	}
	return nil
}

// StopAll stops the children, the last started first.
func (p *Procs) StopAll() {
	for i := len(p.list) - 1; i >= 0; i-- {
		p.list[i].Stop(10 * time.Second)
	}
}

// CPUTime returns the CPU time (user + system) a child has used so far.
func (c *Child) CPUTime() time.Duration {
	if c == nil || c.Exited() {
		return 0
	}
	return ProcCPU(c.Pid())
}

// ProcCPU reads a process's user + system time from /proc.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// CommandCPU is the CPU time (user + system) used so far by every live
// process whose command name (/proc/PID/comm) is comm, such as the
// PostgreSQL server's processes ("postgres"), which are no children of the
// benchmark. Processes that have ended are not counted.
func CommandCPU(comm string) time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(b)) != comm {
			continue
		}
		total += ProcCPU(pid)
	}
	return total
}

// ProcRSS reads a process's resident set size (VmRSS) from /proc, in
// bytes.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

// ExitText is a failed command's stderr, when it has one.
func ExitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// SSHDPath is the OpenSSH server binary.
func SSHDPath() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	return "/usr/sbin/sshd"
}
