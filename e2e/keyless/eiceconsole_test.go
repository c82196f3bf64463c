package keyless

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The console's terminal through an Instance Connect Endpoint (issue 5):
// the server reaches an instance with no public address the way postern
// ssh would, through the endpoint of its VPC, opening the tunnel as the
// signed-in user. These subtests run inside TestEndpointTunnels, once with
// the endpoint in listen mode (the server opens the tunnel at the
// endpoint's address, like any client) and once in relay mode (the server
// carries it in-process to the endpoint's control connection).

// Console users of the endpoint scenario: one whose policy lets them push
// a key and tunnel to SSH, one whose policy lets them push a key only.
const (
	consoleTunnelPolicy = `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*"},
		{"Effect":"Allow","Action":"ec2-instance-connect:OpenTunnel","Resource":"arn:aws:ec2:*:*:instance-connect-endpoint/*",
		 "Condition":{"NumericEquals":{"ec2-instance-connect:remotePort":"22"}}}]}`
	consolePushOnlyPolicy = `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*"}]}`
)

// consoleUsers signs the scenario's two console users in, once.
func (w *eiceWorld) consoleUsers(t *testing.T) {
	t.Helper()
	if w.tunnelCookie != "" {
		return
	}
	w.tunnelUser, w.pushOnlyUser = "tunnels-"+w.id, "pushonly-"+w.id
	w.tunnelCookie = w.consoleUser(t, w.tunnelUser, consoleTunnelPolicy, "violet kettle ocean 42")
	w.pushOnlyCookie = w.consoleUser(t, w.pushOnlyUser, consolePushOnlyPolicy, "granite meadow fox 913")
}

// blockDirectSSH keeps the root namespace, where the server runs, from
// reaching the instance's sshd directly for the rest of the test: the
// only way to it is the endpoint. (The root namespace routes to the
// private subnet, for the agent's connection to the server.)
func (w *eiceWorld) blockDirectSSH(t *testing.T) {
	t.Helper()
	rule := []string{"rule", "add", "to", w.instIP + "/32", "ipproto", "tcp", "dport", "22", "prohibit", "priority", "90"}
	must(t, "ip", rule...)
	t.Cleanup(func() { must(t, "ip", append([]string{"rule", "del"}, rule[2:]...)...) })
	if c, err := net.DialTimeout("tcp", w.instIP+":22", 3*time.Second); err == nil {
		c.Close()
		t.Fatalf("the server's namespace still reaches %s:22 directly", w.instIP)
	}
}

var requestIDPattern = regexp.MustCompile(`request id ([0-9a-f-]{36})`)

// testConsoleThroughEndpoint: the console user gets a shell through the
// endpoint (42), the tunnel's OpenTunnel and CloseTunnel records name them;
// a user whose policy lacks OpenTunnel is told so, and the refusal is
// audited in their name.
func (w *eiceWorld) testConsoleThroughEndpoint(t *testing.T) {
	w.consoleUsers(t)
	w.blockDirectSSH(t)
	// In listen mode the server presents a ticket at the endpoint, which
	// the record notes; in relay mode it decides in-process.
	ticketed := w.tunnelHost == w.edgeIP+":8443"

	c, _, err := w.dialTerminal(t, w.tunnelCookie, w.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	term := readTerminal(t, c)
	msg := term.awaitState(t, "connected")
	if !strings.Contains(msg["message"], "through Instance Connect Endpoint "+w.endpointID) {
		t.Errorf("connected status %v does not name the endpoint", msg)
	}
	term.send(t, "echo $((6*7))\r")
	term.await(t, "42")
	term.send(t, "exit\r")
	if msg := term.awaitState(t, "closed"); msg["message"] != "the session ended" {
		t.Errorf("closed status %v, want the session ended", msg)
	}

	// The session's record names the tunnel; the tunnel's records name
	// the console user.
	session := w.findAuditEvent(t, "ConsoleTerminalSession", false, func(rec map[string]any) bool {
		id := str(rec, "additionalEventData", "tunnelId")
		return str(rec, "userIdentity", "userName") == w.tunnelUser && str(rec, "additionalEventData", "endpointId") == w.endpointID &&
			id != "" && !w.consoleTunnels[id]
	})
	if session == nil {
		t.Fatalf("no ConsoleTerminalSession record of %s through %s with a new tunnel", w.tunnelUser, w.endpointID)
	}
	tunnelID := str(session, "additionalEventData", "tunnelId")
	if w.consoleTunnels == nil {
		w.consoleTunnels = map[string]bool{}
	}
	w.consoleTunnels[tunnelID] = true
	open := w.findAuditEvent(t, "OpenTunnel", false, func(rec map[string]any) bool { return str(rec, "requestID") == tunnelID })
	switch {
	case open == nil:
		t.Errorf("no OpenTunnel record %s", tunnelID)
	case str(open, "errorCode") != "" || str(open, "userIdentity", "userName") != w.tunnelUser ||
		str(open, "userIdentity", "type") != "IAMUser" || str(open, "userIdentity", "accessKeyId") != "" ||
		str(open, "userAgent") != "postern-console" || str(open, "sourceIPAddress") != w.hostIP ||
		str(open, "additionalEventData", "invokedBy") != "postern-console" || str(open, "additionalEventData", "sessionType") != "console" ||
		str(open, "requestParameters", "privateIpAddress") != w.instIP:
		t.Errorf("the OpenTunnel record does not show an allowed tunnel of console user %s from %s to %s: %s",
			w.tunnelUser, w.hostIP, w.instIP, jsonText(open))
	case ticketed != (str(open, "additionalEventData", "ticketSourceIPAddress") == w.hostIP):
		t.Errorf("the OpenTunnel record's ticketSourceIPAddress is %q; want %s only in listen mode (ticketed %v)",
			str(open, "additionalEventData", "ticketSourceIPAddress"), w.hostIP, ticketed)
	}
	waitFor(t, "the tunnel's CloseTunnel record", 30*time.Second, func() bool {
		return w.findAuditEvent(t, "CloseTunnel", false, func(rec map[string]any) bool {
			return str(rec, "additionalEventData", "tunnelId") == tunnelID && str(rec, "userIdentity", "userName") == w.tunnelUser
		}) != nil
	})

	// A user whose policy lacks OpenTunnel: the key push passes, the
	// tunnel is refused, in plain words and in the trail.
	c, _, err = w.dialTerminal(t, w.pushOnlyCookie, w.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	term = readTerminal(t, c)
	denied := term.awaitControl(t, "error")
	if denied["code"] != "AccessDenied" || denied["action"] != "ec2-instance-connect:OpenTunnel" ||
		!strings.Contains(denied["message"], "ec2-instance-connect:OpenTunnel") || !strings.Contains(denied["message"], w.endpointID) {
		t.Errorf("error frame %v; want AccessDenied naming OpenTunnel on %s", denied, w.endpointID)
	}
	if st := term.closeStatus(t); st != websocket.StatusPolicyViolation {
		t.Errorf("close status %v, want 1008", st)
	}
	m := requestIDPattern.FindStringSubmatch(denied["message"])
	if m == nil {
		t.Fatalf("the denial %q quotes no request id", denied["message"])
	}
	refusal := w.findAuditEvent(t, "OpenTunnel", true, func(rec map[string]any) bool { return str(rec, "requestID") == m[1] })
	if refusal == nil || str(refusal, "errorCode") != "AccessDeniedException" || str(refusal, "userIdentity", "userName") != w.pushOnlyUser ||
		str(refusal, "userAgent") != "postern-console" {
		t.Errorf("the refused tunnel's OpenTunnel record %s is not an AccessDeniedException of %s: %s", m[1], w.pushOnlyUser, jsonText(refusal))
	}
	if w.findAuditEvent(t, "ConsoleTerminalSession", true, func(rec map[string]any) bool {
		return str(rec, "userIdentity", "userName") == w.pushOnlyUser && str(rec, "errorCode") == "AccessDenied" &&
			str(rec, "additionalEventData", "tunnelId") == m[1]
	}) == nil {
		t.Errorf("no ConsoleTerminalSession record of %s's refused tunnel %s", w.pushOnlyUser, m[1])
	}
}
