package keyless

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The console in a real browser (issue 5): Debian's Chromium, driven by
// playwright-core from e2e/browser/console.mjs, against this package's
// world of a real server, agent and sshd.

const (
	// chromiumPath is Debian's chromium package.
	chromiumPath = "/usr/bin/chromium"
	// screenshotsEnv names a directory to keep the browser tests'
	// screenshots in; without it they go to a temporary directory.
	screenshotsEnv = "POSTERN_SCREENSHOTS"
)

// TestConsoleBrowser signs in to the console in Chromium, finds the
// instance by its tag, connects, types, pastes with Ctrl+V, resizes the
// window and watches tput cols follow, exits and signs out; a reviewer
// then plays the recording back and finds the key push in the audit
// trail. A user whose policy refuses the key push sees why, and finds the
// refusal in the audit trail. Each page is saved as a PNG.
func TestConsoleBrowser(t *testing.T) {
	nodeBin, browserDir := requireBrowser(t)
	w := newWorld(t)
	if !t.Run("Activation", w.testActivation) {
		t.FailNow()
	}
	w.startAgent(t)
	w.startSSHD(t)
	w.waitState(t, "running", 30*time.Second)

	// A tag only this instance carries, and a second instance without it
	// that the tag filter must hide.
	tag := "console-test=" + w.id
	w.mustPostern(t, "tag", "add", w.instanceID, "--tag", tag)
	decoyID := w.registerDecoy(t)

	const (
		connect = `{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*"},
			{"Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*","Condition":{"StringEquals":{"ec2:osuser":"alice"}}}]}`
		review = `{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":["postern:ListRecordings","postern:GetRecording","cloudtrail:LookupEvents"],"Resource":"*"}]}`
		lookOnly = `{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":["ec2:DescribeInstances","cloudtrail:LookupEvents"],"Resource":"*"}]}`
	)
	ops := browserAccount{Name: "ops-" + w.id, Password: "amber lantern " + randomHex(t, 6)}
	reviewer := browserAccount{Name: "review-" + w.id, Password: "quiet harbour " + randomHex(t, 6)}
	nope := browserAccount{Name: "nope-" + w.id, Password: "copper thistle " + randomHex(t, 6)}
	w.consoleAccount(t, ops.Name, connect, ops.Password)
	w.consoleAccount(t, reviewer.Name, review, reviewer.Password)
	w.consoleAccount(t, nope.Name, lookOnly, nope.Password)

	shots := screenshotDir(t)
	base := browserConfig{
		URL:           w.URL,
		SPKI:          w.serverSPKI(t),
		Chromium:      chromiumPath,
		ScreenshotDir: shots,
		InstanceID:    w.instanceID,
		InstanceName:  w.instanceName,
		Tag:           tag,
		DecoyID:       decoyID,
		OSUser:        "alice",
	}

	t.Run("Connect", func(t *testing.T) {
		cfg := base
		cfg.Scenario, cfg.User, cfg.Reviewer = "connect", ops, &reviewer
		var res struct {
			ColsBefore, ColsAfter int
			RowsBefore, RowsAfter int
			RecordingID           string
			Pasted, PasteVia      string
		}
		w.runBrowser(t, nodeBin, browserDir, cfg, &res)
		t.Logf("Ctrl+V pasted through the %s", res.PasteVia)

		// What the browser saw, against the server's own records.
		if res.ColsAfter <= 0 || res.RowsAfter <= 0 || res.ColsBefore == res.ColsAfter || res.RowsBefore == res.RowsAfter {
			t.Errorf("tput printed %dx%d before and %dx%d after the resize", res.ColsBefore, res.RowsBefore, res.ColsAfter, res.RowsAfter)
		}
		cast, err := os.ReadFile(filepath.Join(w.dataDir, "recordings", res.RecordingID+".cast"))
		if err != nil {
			t.Fatalf("the recording the browser played: %v", err)
		}
		events := castEvents(t, cast)
		var pastedAtOnce, resized, answered bool
		for _, ev := range events {
			switch {
			case ev.kind == "i" && ev.data == res.Pasted+"\r":
				// A paste reaches the shell as one write; typing is a
				// write per key.
				pastedAtOnce = true
			case ev.kind == "r" && ev.data == fmt.Sprintf("%dx%d", res.ColsAfter, res.RowsAfter):
				resized = true
			case ev.kind == "o" && strings.Contains(ev.data, "PASTED-7"):
				answered = true
			}
		}
		if !pastedAtOnce || !resized || !answered {
			t.Errorf("recording %s: paste as one input event %v, resize to %dx%d %v, pasted command's output %v; want all\n%s",
				res.RecordingID, pastedAtOnce, res.ColsAfter, res.RowsAfter, resized, answered, truncateText(string(cast), 4000))
		}
		if ev := w.findAuditEvent(t, "SendSSHPublicKey", false, func(rec map[string]any) bool {
			return str(rec, "userIdentity", "userName") == ops.Name && str(rec, "userAgent") == "postern-console" &&
				str(rec, "errorCode") == "" && str(rec, "sourceIPAddress") == w.hostIP
		}); ev == nil {
			t.Errorf("the browser's key push as %s from %s is not audited", ops.Name, w.hostIP)
		}
		if ev := w.findAuditEvent(t, "ConsoleTerminalSession", false, func(rec map[string]any) bool {
			return str(rec, "userIdentity", "userName") == ops.Name && str(rec, "errorCode") == ""
		}); ev == nil {
			t.Errorf("the browser's terminal session is not audited as one that ended well")
		}
	})

	t.Run("Denied", func(t *testing.T) {
		cfg := base
		cfg.Scenario, cfg.User = "denied", nope
		var res struct{ Title, Message, Detail, ErrorCode string }
		w.runBrowser(t, nodeBin, browserDir, cfg, &res)
		ev := w.findAuditEvent(t, "SendSSHPublicKey", true, func(rec map[string]any) bool {
			return str(rec, "userIdentity", "userName") == nope.Name && str(rec, "userAgent") == "postern-console"
		})
		if ev == nil {
			t.Fatalf("the refused key push of %s is not audited", nope.Name)
		}
		if code := str(ev, "errorCode"); code != res.ErrorCode {
			t.Errorf("the Audit page shows error %q, the record says %q", res.ErrorCode, code)
		}
	})
}

// requireBrowser returns node and the directory of the browser scripts,
// with playwright-core installed there. Under CI (CI set, as .ci/run
// does) anything missing fails the test; elsewhere it skips, naming what
// to install.
func requireBrowser(t *testing.T) (nodeBin, dir string) {
	t.Helper()
	dir = filepath.Join(repoRoot, "e2e", "browser")
	var missing []string
	if fi, err := os.Stat(chromiumPath); err != nil || fi.Mode()&0o111 == 0 {
		missing = append(missing, chromiumPath+" (apt-get install chromium)")
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node (apt-get install nodejs npm)")
	} else if v := nodeVersion(nodeBin); v < minNode {
		missing = append(missing, fmt.Sprintf("node %d or newer for playwright-core (%s is version %d)", minNode, nodeBin, v))
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "playwright-core (npm ci in e2e/browser)")
	}
	if len(missing) == 0 {
		return nodeBin, dir
	}
	msg := fmt.Sprintf("the browser tests need %s", strings.Join(missing, ", "))
	if ci := os.Getenv("CI"); ci != "" && ci != "0" && ci != "false" {
		t.Fatalf("%s; %s", msg, ciHint)
	}
	t.Skipf("%s; .ci/run installs them (under CI this is a failure)", msg)
	return "", ""
}

// minNode is the oldest node that playwright-core supports.
const minNode = 20

// nodeVersion returns node's major version, or 0 when it cannot tell.
func nodeVersion(nodeBin string) int {
	out, err := exec.Command(nodeBin, "--version").Output()
	if err != nil {
		return 0
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")
	n, _ := strconv.Atoi(major)
	return n
}

// screenshotDir is where the browser saves its screenshots: the directory
// POSTERN_SCREENSHOTS names (created if needed), else a temporary one.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		return t.TempDir()
	}
	dir, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatalf("%s: %v", screenshotsEnv, err)
	}
	t.Logf("screenshots go to %s", dir)
	return dir
}

// serverSPKI returns the base64 SHA-256 of the server certificate's
// public key, after verifying the certificate against the server's CA:
// what Chromium's --ignore-certificate-errors-spki-list pins, so that the
// browser trusts exactly this server without a CA import.
func (w *world) serverSPKI(t *testing.T) string {
	t.Helper()
	tr, ok := w.http.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("the world's HTTP client has a %T, want *http.Transport", w.http.Transport)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(w.URL, "https://"), tr.TLSClientConfig)
	if err != nil {
		t.Fatalf("TLS to the server, verified with its CA: %v", err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// registerDecoy registers a second instance (no agent runs for it) and
// returns its id.
func (w *world) registerDecoy(t *testing.T) string {
	t.Helper()
	var act struct{ ActivationId, ActivationCode string }
	w.mustPosternJSON(t, &act, "activation", "create", "--default-instance-name", "decoy-"+w.id,
		"--registration-limit", "1", "--expires", "1h", "--tag", "team=decoy")
	dir := filepath.Join(w.runDir, "decoy")
	argv := w.inNS(posternBin, "agent", "register", "--server", w.URL,
		"--activation-id", act.ActivationId, "--activation-code", act.ActivationCode,
		"--ca-bundle", w.env["AWS_CA_BUNDLE"], "--state-dir", filepath.Join(dir, "state"),
		"--helper-config", filepath.Join(dir, "helper.json"), "--socket", filepath.Join(dir, "sock", "agent.sock"),
		"--ssh-port", "22", "--ssh-dir", w.sshDir)
	r := run(t, command(t, nil, argv[0], argv[1:]...))
	id := regexp.MustCompile(`\bi-[0-9a-f]{8,}\b`).FindString(r.Stdout)
	if r.Code != 0 || id == "" {
		t.Fatalf("register the decoy instance: %s", r)
	}
	return id
}

// browserAccount is a console user the browser signs in as.
type browserAccount struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// browserConfig is what console.mjs reads (its Config typedef).
type browserConfig struct {
	Scenario      string          `json:"scenario"`
	URL           string          `json:"url"`
	SPKI          string          `json:"spki"`
	Chromium      string          `json:"chromium"`
	ProfileDir    string          `json:"profileDir"`
	ScreenshotDir string          `json:"screenshotDir"`
	InstanceID    string          `json:"instanceId"`
	InstanceName  string          `json:"instanceName"`
	Tag           string          `json:"tag"`
	DecoyID       string          `json:"decoyId"`
	OSUser        string          `json:"osUser"`
	User          browserAccount  `json:"user"`
	Reviewer      *browserAccount `json:"reviewer,omitempty"`
}

// runBrowser runs console.mjs with cfg in a fresh browser profile and
// decodes the RESULT line it ends with into res.
func (w *world) runBrowser(t *testing.T, nodeBin, dir string, cfg browserConfig, res any) {
	t.Helper()
	cfg.ProfileDir = t.TempDir()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "browser.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := command(t, map[string]string{"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}, nodeBin, "console.mjs", cfgPath)
	cmd.Dir = dir
	start := time.Now()
	r := run(t, cmd)
	t.Logf("console.mjs %s (%s):\n%s", cfg.Scenario, time.Since(start).Round(time.Millisecond), r.Stdout)
	if r.Code != 0 {
		t.Fatalf("the browser scenario %s failed (screenshots in %s): %s", cfg.Scenario, cfg.ScreenshotDir, r)
	}
	var last string
	sc := bufio.NewScanner(strings.NewReader(r.Stdout))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			last = rest
		}
	}
	if err := json.Unmarshal([]byte(last), res); err != nil {
		t.Fatalf("console.mjs %s ended without a RESULT line (%v): %s", cfg.Scenario, err, r)
	}
}

// castEvent is one event line of an asciicast v2 recording.
type castEvent struct {
	kind, data string
}

// castEvents decodes a recording's event lines (after the header).
func castEvents(t *testing.T, cast []byte) []castEvent {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(cast)), "\n")
	var out []castEvent
	for i, line := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(line), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("recording line %d is not [time, kind, data]: %q (%v)", i+2, line, err)
		}
		kind, _ := ev[1].(string)
		data, _ := ev[2].(string)
		out = append(out, castEvent{kind, data})
	}
	return out
}
