package e2e

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevDemo runs what `make demo` runs — `postern dev` — and checks that
// it logs into its demo instance through `postern ssh` (the hello line),
// prints the API URL and the env line, keeps serving, and exits cleanly on
// SIGTERM. As root (CI) the demo instance is a real sshd.
func TestDevDemo(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	home := t.TempDir()
	cmd := exec.Command(posternBin, "dev", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:"+strconv.Itoa(port))
	cmd.Env = cleanEnv(home, nil)
	out, errOut := newWatchedBuffer(), newWatchedBuffer()
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	if _, ok := out.await("Serving until Ctrl-C", exited, 90*time.Second); !ok {
		t.Fatalf("postern dev did not come up\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	hello := ""
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "hello from ") {
			hello = l
		}
	}
	if hello == "" || strings.Contains(hello, "$(hostname)") {
		t.Fatalf("no hello line from the remote shell:\n%s", out)
	}
	text := out.String()
	for _, want := range []string{"https://127.0.0.1:" + strconv.Itoa(port), "env --data-dir"} {
		if !strings.Contains(text, want) {
			t.Errorf("postern dev's output lacks %q:\n%s", want, text)
		}
	}
	// Still serving: the API answers.
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
	if err != nil {
		t.Fatalf("the API stopped listening after the demo login: %v", err)
	}
	c.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("postern dev exited with %v after SIGTERM\nstderr:\n%s", waitErr, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("postern dev did not exit within 30s of SIGTERM")
	}
}
