package keyless

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/consoleterm"
)

// TestConsoleTerminal drives the console terminal's WebSocket against a
// real server, agent and sshd: sign in, open a shell as alice, run
// commands, resize, paste, pass bytes that are not UTF-8; a user the
// policy refuses, a cross-site upgrade, and an instance that drops off
// mid-session; and the recording.
func TestConsoleTerminal(t *testing.T) {
	w := newWorld(t)
	if !t.Run("Activation", w.testActivation) {
		t.FailNow()
	}
	w.startAgent(t)
	w.startSSHD(t)
	w.waitState(t, "running", 30*time.Second)

	const allow = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*"}]}`
	const describeOnly = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*"}]}`
	ops, nope := "ops-"+w.id, "nope-"+w.id
	opsCookie := w.consoleUser(t, ops, allow, "violet kettle ocean 42")
	nopeCookie := w.consoleUser(t, nope, describeOnly, "granite meadow fox 913")

	t.Run("CrossOrigin", func(t *testing.T) {
		_, resp, err := w.dialTerminal(t, opsCookie, "https://evil.example", "alice")
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a terminal upgrade from another origin: %v (response %v); want 403", err, resp)
		}
		if ev := w.findAuditEvent(t, "ConsoleRequest", true, func(rec map[string]any) bool {
			return str(rec, "additionalEventData", "path") == consoleterm.Path && str(rec, "userIdentity", "userName") == ops
		}); ev == nil {
			t.Errorf("the refused cross-site upgrade is not audited")
		}
	})
	t.Run("NoSession", func(t *testing.T) {
		_, resp, err := w.dialTerminal(t, "", w.URL, "alice")
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("a terminal upgrade without a session: %v (response %v); want 401", err, resp)
		}
	})
	t.Run("Denied", func(t *testing.T) {
		c, _, err := w.dialTerminal(t, nopeCookie, w.URL, "alice")
		if err != nil {
			t.Fatal(err)
		}
		term := readTerminal(t, c)
		msg := term.awaitControl(t, "error")
		if msg["code"] != "AccessDenied" || !strings.Contains(msg["message"], "SendSSHPublicKey") {
			t.Errorf("denied user: error frame %v; want AccessDenied naming the action", msg)
		}
		if st := term.closeStatus(t); st != websocket.StatusPolicyViolation {
			t.Errorf("denied user: close status %v, want 1008", st)
		}
		if ev := w.findAuditEvent(t, "SendSSHPublicKey", true, func(rec map[string]any) bool {
			return str(rec, "userIdentity", "userName") == nope && str(rec, "userAgent") == "postern-console"
		}); ev == nil {
			t.Errorf("the console's refused key push for %s is not audited", nope)
		} else if str(ev, "sourceIPAddress") != w.hostIP {
			t.Errorf("the refused push's audit record names source %q, want %s", str(ev, "sourceIPAddress"), w.hostIP)
		}
	})
	t.Run("Shell", func(t *testing.T) {
		c, _, err := w.dialTerminal(t, opsCookie, w.URL, "alice")
		if err != nil {
			t.Fatal(err)
		}
		term := readTerminal(t, c)
		if msg := term.awaitState(t, "connected"); !strings.Contains(msg["message"], w.instanceID) {
			t.Errorf("connected status %v does not name the instance", msg)
		}
		term.send(t, "echo $((6*7))\r")
		term.await(t, "42")

		b, _ := json.Marshal(map[string]any{"type": "resize", "cols": 123, "rows": 40})
		if err := c.Write(t.Context(), websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		term.send(t, "tput cols\r")
		term.await(t, "123")

		// 64 KiB in one frame: lines of a no-op command, then a marker.
		var paste bytes.Buffer
		for paste.Len() < 64<<10 {
			paste.WriteString(": " + strings.Repeat("x", 1000) + "\r")
		}
		term.send(t, paste.String())
		term.send(t, "echo PASTE-$((2+3))-END\r")
		term.await(t, "PASTE-5-END")

		term.send(t, `printf '\377\376BYTES\n'`+"\r")
		term.await(t, "\xff\xfeBYTES")

		if ev := w.findAuditEvent(t, "SendSSHPublicKey", false, func(rec map[string]any) bool {
			return str(rec, "userIdentity", "userName") == ops && str(rec, "userAgent") == "postern-console" &&
				str(rec, "errorCode") == "" && str(rec, "sourceIPAddress") == w.hostIP
		}); ev == nil {
			t.Errorf("the console's key push as %s is not audited as the user from %s", ops, w.hostIP)
		}

		// The instance drops off: its sshd processes die.
		w.killSSHD(t)
		msg := term.awaitState(t, "closed")
		if want := "the connection to " + w.instanceID + " was lost"; msg["message"] != want {
			t.Errorf("closed status %q, want %q", msg["message"], want)
		}
		if ev := w.findAuditEvent(t, "ConsoleTerminalSession", true, func(rec map[string]any) bool {
			return str(rec, "userIdentity", "userName") == ops && str(rec, "errorCode") == "ConnectionLost"
		}); ev == nil {
			t.Errorf("the lost terminal session is not audited")
		}
		w.checkRecording(t, "42")
	})
}

// consoleUser creates an IAM user with a policy and a console password,
// signs in and returns the session cookie.
func (w *world) consoleUser(t *testing.T, name, policy, password string) string {
	t.Helper()
	w.consoleAccount(t, name, policy, password)
	body, _ := json.Marshal(map[string]string{"user": name, "password": password})
	req, err := http.NewRequest(http.MethodPost, w.URL+"/console/api/signin", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", w.URL)
	resp, err := w.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "postern_console" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("sign-in as %s: status %d and no session cookie", name, resp.StatusCode)
	return ""
}

// consoleAccount creates an IAM user with a policy and a console password.
func (w *world) consoleAccount(t *testing.T, name, policy, password string) {
	t.Helper()
	w.mustPostern(t, "user", "create", name)
	w.mustPostern(t, "policy", "put", "--user", name, "--name", "connect", "--document", policy)
	cmd := command(t, nil, posternBin, "user", "set-password", "--password-stdin", name)
	cmd.Env = cleanEnv(w.home, w.env)
	cmd.Stdin = strings.NewReader(password + "\n")
	if r := run(t, cmd); r.Code != 0 {
		t.Fatalf("postern user set-password %s: %s", name, r)
	}
}

// dialTerminal opens the terminal WebSocket for osUser on the instance.
func (w *world) dialTerminal(t *testing.T, cookie, origin, osUser string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	q := url.Values{"instanceId": {w.instanceID}, "osUser": {osUser}, "cols": {"80"}, "rows": {"24"}}
	h := http.Header{"Origin": {origin}}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	// No client timeout: the socket lives as long as the session.
	hc := &http.Client{Transport: w.http.Transport}
	c, resp, err := websocket.Dial(t.Context(), strings.Replace(w.URL, "https://", "wss://", 1)+consoleterm.Path+"?"+q.Encode(),
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// terminalReader collects a terminal's output and control messages.
type terminalReader struct {
	c        *websocket.Conn
	out      *watchedBuffer
	from     int
	controls chan map[string]string
	done     chan struct{}
	err      error
}

func readTerminal(t *testing.T, c *websocket.Conn) *terminalReader {
	r := &terminalReader{c: c, out: newWatchedBuffer(), controls: make(chan map[string]string, 64), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				r.err = err
				return
			}
			if typ == websocket.MessageBinary {
				r.out.Write(b)
				continue
			}
			var m map[string]string
			if json.Unmarshal(b, &m) != nil {
				t.Errorf("a text frame that is not a JSON object of strings: %q", b)
				continue
			}
			r.controls <- m
		}
	}()
	return r
}

func (r *terminalReader) send(t *testing.T, s string) {
	t.Helper()
	if err := r.c.Write(t.Context(), websocket.MessageBinary, []byte(s)); err != nil {
		t.Fatalf("send %q: %v", truncateText(s, 40), err)
	}
}

// await waits for an output line containing s after what earlier awaits
// consumed.
func (r *terminalReader) await(t *testing.T, s string) {
	t.Helper()
	_, next, ok := r.out.await(r.from, s, r.done, 30*time.Second)
	if !ok {
		t.Fatalf("the terminal did not show %q (read error %v); output so far:\n%q", s, r.err, truncateText(r.out.String(), 4000))
	}
	r.from = next
}

// awaitControl returns the next control message of type typ; statuses
// before it are skipped.
func (r *terminalReader) awaitControl(t *testing.T, typ string) map[string]string {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case m := <-r.controls:
			if m["type"] == typ {
				return m
			}
			if m["type"] == "error" {
				t.Fatalf("waiting for a %s message, got error %v", typ, m)
			}
		case <-r.done:
			select {
			case m := <-r.controls:
				if m["type"] == typ {
					return m
				}
			default:
			}
			t.Fatalf("the WebSocket ended (%v) before a %s message", r.err, typ)
		case <-timer.C:
			t.Fatalf("no %s message within 30s", typ)
		}
	}
}

// awaitState returns the next status message with state, failing on any
// other closed status.
func (r *terminalReader) awaitState(t *testing.T, state string) map[string]string {
	t.Helper()
	for {
		m := r.awaitControl(t, "status")
		if m["state"] == state {
			return m
		}
		if m["state"] == "closed" {
			t.Fatalf("the session closed while waiting for %s: %v\noutput:\n%q", state, m, truncateText(r.out.String(), 4000))
		}
	}
}

// closeStatus waits for the WebSocket to end and returns its close code.
func (r *terminalReader) closeStatus(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the WebSocket did not close")
	}
	return websocket.CloseStatus(r.err)
}

// killSSHD kills every sshd process of the instance's namespace: the
// listener and the session processes, so the TCP connection ends.
func (w *world) killSSHD(t *testing.T) {
	t.Helper()
	for _, f := range strings.Fields(must(t, "ip", "netns", "pids", w.ns)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", f, "comm"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "sshd") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	<-w.sshd.exited
}

// checkRecording looks for want in the recordings under the data dir.
func (w *world) checkRecording(t *testing.T, want string) {
	t.Helper()
	var found []string
	err := filepath.WalkDir(filepath.Join(w.dataDir, "recordings"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(want)) {
			found = append(found, p)
		}
		return err
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(found) == 0 {
		t.Errorf("no recording under %s holds %q", filepath.Join(w.dataDir, "recordings"), want)
	}
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
