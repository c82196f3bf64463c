package devsshd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// ptyDrain is how long a PTY session's output is still read after its
// shell exited: sshd, too, ends the session with the shell rather than
// with whatever it left running on the terminal.
const ptyDrain = 250 * time.Millisecond

// Request payloads (RFC 4254, section 6).
type (
	ptyRequest struct {
		Term                      string
		Cols, Rows, Width, Height uint32
		Modes                     string
	}
	windowChange struct{ Cols, Rows, Width, Height uint32 }
	execRequest  struct{ Command string }
	signalReq    struct{ Signal string }
	exitStatus   struct{ Status uint32 }
	exitSignal   struct {
		Signal     string
		CoreDumped bool
		Message    string
		Lang       string
	}
)

// session is one "session" channel: at most one process, with a PTY if
// the client asked for one first.
type session struct {
	srv  *Server
	conn *ssh.ServerConn
	ch   ssh.Channel
	pty  *ptyRequest

	// Set by start, before run begins.
	cmd    *exec.Cmd
	stdin  *os.File // the PTY master, or the write end of stdin's pipe
	stdout *os.File // the PTY master, or the read end of stdout's pipe
	stderr *os.File // nil with a PTY
	exited chan struct{}
	done   chan struct{} // run has returned
}

func (s *Server) serveSession(conn *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	sess := &session{srv: s, conn: conn, ch: ch}
	defer sess.end()
	for req := range reqs {
		ok := false
		switch req.Type {
		case "pty-req":
			var p ptyRequest
			if sess.cmd == nil && ssh.Unmarshal(req.Payload, &p) == nil {
				sess.pty, ok = &p, true
			}
		case "window-change":
			var w windowChange
			if ssh.Unmarshal(req.Payload, &w) == nil {
				ok = sess.resize(w) == nil
			}
		case "shell", "exec":
			var e execRequest
			if sess.cmd != nil || req.Type == "exec" && ssh.Unmarshal(req.Payload, &e) != nil {
				break
			}
			if err := sess.start(req.Type == "shell", e.Command); err != nil {
				s.log.Warn("could not start a session", "user", conn.User(), "err", err)
				break
			}
			// Reply before any output or exit status goes out.
			if req.WantReply {
				_ = req.Reply(true, nil)
			}
			go sess.run()
			continue
		case "signal":
			var sig signalReq
			if sess.cmd != nil && ssh.Unmarshal(req.Payload, &sig) == nil {
				if n, known := signalNumber(sig.Signal); known {
					ok = sess.cmd.Process.Signal(n) == nil
				}
			}
		}
		// "env" lands here: refused, as sshd refuses what it does not
		// AcceptEnv; so do agent and X11 forwarding and subsystems.
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
	}
}

// start starts the user's shell: a login shell for "shell", `shell -c
// command` for "exec". Its output waits in the pipe or PTY until run.
func (sess *session) start(login bool, command string) error {
	a := sess.srv.account
	cmd := exec.Command(a.shell, "-c", command)
	cmd.Args[0] = filepath.Base(a.shell)
	if login {
		cmd = exec.Command(a.shell)
		cmd.Args[0] = "-" + filepath.Base(a.shell)
	}
	cmd.Env = []string{"USER=" + a.name, "LOGNAME=" + a.name, "HOME=" + a.home, "SHELL=" + a.shell, "PATH=" + defaultPath(a.uid)}
	cmd.Env = append(cmd.Env, sshClientEnv(sess.conn)...)
	cmd.Dir = "/"
	if fi, err := os.Stat(a.home); err == nil && fi.IsDir() {
		cmd.Dir = a.home
	}
	// Its own session, so that ending it reaches the whole process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var theirs []*os.File // the child's ends, closed here once it started
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	if sess.pty != nil {
		master, slave, err := openPTY()
		if err != nil {
			return err
		}
		theirs = append(theirs, slave)
		p := sess.pty
		if err := setWinsize(master, p.Cols, p.Rows, p.Width, p.Height); err != nil {
			master.Close()
			return err
		}
		if p.Term != "" {
			cmd.Env = append(cmd.Env, "TERM="+p.Term)
		}
		cmd.Env = append(cmd.Env, "SSH_TTY="+slave.Name())
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr.Setctty = true // fd 0 becomes the controlling terminal
		sess.stdin, sess.stdout = master, master
	} else {
		var ours []*os.File
		for range 3 {
			r, w, err := os.Pipe()
			if err != nil {
				closeAll(ours)
				return err
			}
			ours = append(ours, r, w)
		}
		theirs = append(theirs, ours[0], ours[3], ours[5])
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ours[0], ours[3], ours[5]
		sess.stdin, sess.stdout, sess.stderr = ours[1], ours[2], ours[4]
	}
	if err := cmd.Start(); err != nil {
		closeAll([]*os.File{sess.stdin, sess.stdout, sess.stderr})
		sess.stdin, sess.stdout, sess.stderr = nil, nil, nil
		return err
	}
	sess.cmd = cmd
	sess.exited = make(chan struct{})
	sess.done = make(chan struct{})
	return nil
}

// run pipes the channel to the process and back, then reports how it
// ended and closes the channel.
func (sess *session) run() {
	defer close(sess.done)
	tty := sess.stderr == nil
	go func() {
		_, _ = io.Copy(sess.stdin, sess.ch)
		if !tty { // the client's EOF is the process's; a terminal has none
			sess.stdin.Close()
		}
	}()
	var copies sync.WaitGroup
	if tty {
		copies.Go(func() { sess.copyPTY() })
	} else {
		copies.Go(func() { _, _ = io.Copy(sess.ch, sess.stdout) })
		copies.Go(func() { _, _ = io.Copy(sess.ch.Stderr(), sess.stderr) })
	}
	_ = sess.cmd.Wait()
	close(sess.exited)
	if tty {
		_ = sess.stdout.SetReadDeadline(time.Now().Add(ptyDrain))
	}
	copies.Wait()
	closeAll([]*os.File{sess.stdin, sess.stdout, sess.stderr})
	_ = sess.ch.CloseWrite()
	name, payload := exitMessage(sess.cmd.ProcessState)
	_, _ = sess.ch.SendRequest(name, false, payload)
	_ = sess.ch.Close()
}

// copyPTY copies the terminal's output to the channel until the terminal
// hangs up, or, once the shell has exited, falls quiet for ptyDrain.
func (sess *session) copyPTY() {
	buf := make([]byte, 32<<10)
	for {
		n, err := sess.stdout.Read(buf)
		if n > 0 {
			if _, werr := sess.ch.Write(buf[:n]); werr != nil {
				return
			}
			select {
			case <-sess.exited:
				_ = sess.stdout.SetReadDeadline(time.Now().Add(ptyDrain))
			default:
			}
		}
		if err != nil {
			return // EIO: no process has the terminal open any more
		}
	}
}

// end runs when the channel is closed, by either side: whatever still
// runs in the session is killed.
func (sess *session) end() {
	if sess.cmd != nil {
		select {
		case <-sess.exited:
		default:
			_ = syscall.Kill(-sess.cmd.Process.Pid, syscall.SIGKILL)
		}
		// Unblock the copies even if something escaped the group.
		closeAll([]*os.File{sess.stdout, sess.stderr})
		<-sess.done
	}
	_ = sess.ch.Close()
}

func (sess *session) resize(w windowChange) error {
	if sess.cmd == nil {
		if sess.pty != nil {
			sess.pty.Cols, sess.pty.Rows, sess.pty.Width, sess.pty.Height = w.Cols, w.Rows, w.Width, w.Height
			return nil
		}
		return fmt.Errorf("no terminal")
	}
	if sess.stderr != nil {
		return fmt.Errorf("no terminal")
	}
	return setWinsize(sess.stdout, w.Cols, w.Rows, w.Width, w.Height)
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// exitMessage is the "exit-status" or "exit-signal" request that tells
// the client how the process ended.
func exitMessage(st *os.ProcessState) (string, []byte) {
	if st == nil {
		return "exit-status", ssh.Marshal(exitStatus{255})
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "exit-signal", ssh.Marshal(exitSignal{Signal: signalName(ws.Signal()), CoreDumped: ws.CoreDump()})
	}
	return "exit-status", ssh.Marshal(exitStatus{uint32(st.ExitCode())})
}

// signals are the names RFC 4254 gives signals.
var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP,
	"ILL": syscall.SIGILL, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

func signalNumber(name string) (syscall.Signal, bool) {
	n, ok := signals[name]
	return n, ok
}

func signalName(sig syscall.Signal) string {
	for name, n := range signals {
		if n == sig {
			return name
		}
	}
	return "SIG@openssh.com" // what sshd sends for a signal RFC 4254 does not name
}

// sshClientEnv is SSH_CLIENT and SSH_CONNECTION, as sshd sets them.
func sshClientEnv(conn *ssh.ServerConn) []string {
	rh, rp, err1 := net.SplitHostPort(conn.RemoteAddr().String())
	lh, lp, err2 := net.SplitHostPort(conn.LocalAddr().String())
	if err1 != nil || err2 != nil {
		return nil
	}
	return []string{"SSH_CLIENT=" + rh + " " + rp + " " + lp, "SSH_CONNECTION=" + rh + " " + rp + " " + lh + " " + lp}
}

// defaultPath is sshd's default PATH on Debian.
func defaultPath(uid int) string {
	if uid == 0 {
		return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return "/usr/local/bin:/usr/bin:/bin:/usr/games"
}

// loginShell is uid's shell from /etc/passwd. An account whose shell
// refuses logins (nologin, false: typical of the service accounts a demo
// may run as) gets /bin/sh: it already runs this process, so a shell
// gives it nothing it did not have.
func loginShell(uid string) string {
	shell := ""
	if f, err := os.Open("/etc/passwd"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Split(sc.Text(), ":"); len(fields) == 7 && fields[2] == uid {
				shell = fields[6]
				break
			}
		}
		f.Close()
	}
	switch filepath.Base(shell) {
	case "", ".", "nologin", "false":
		return "/bin/sh"
	}
	return shell
}
