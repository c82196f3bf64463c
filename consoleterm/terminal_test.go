package consoleterm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/console"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/store/sqlite/sqlitetest"
	"github.com/postern-dev/postern/tunnel"
	"github.com/postern-dev/postern/tunnel/tunneltest"
)

const testInstance = "i-0123456789abcdef0"

// fixture is a terminal Server whose instance is an in-process SSH
// server: a PTY "shell" that echoes its input, reports window changes and
// exits on "exit".
type fixture struct {
	t       *testing.T
	st      postern.Store
	srv     *httptest.Server
	hostKey ssh.Signer
	ln      net.Listener

	mu       sync.Mutex
	pushed   string // the last key pushed
	pushErr  error  // what the pusher answers
	recorder *fakeRecorder
	frozen   chan struct{} // closed: the link to the instance goes silent
	sshDone  chan struct{} // closed when the instance's side of a connection ends
	served   chan struct{} // receives when a terminal request is done (audited)

	dials     int      // direct connections to the instance
	tunnels   []string // "user endpoint target:port source" of each tunnel opened
	tunnelErr error    // what opening a tunnel answers
}

func newFixture(t *testing.T, keepAlive time.Duration) *fixture {
	t.Helper()
	st, sealer := sqlitetest.Open(t)
	auth := authority.New(authority.Config{Region: "us-east-1", Account: "123456789012"}, st, sealer, nil)
	_, auditKey, _ := ed25519.GenerateKey(rand.Reader)
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, hostKey: hostKey, recorder: &fakeRecorder{}, frozen: make(chan struct{}), sshDone: make(chan struct{}), served: make(chan struct{}, 1)}
	f.putInstance(hostKey.PublicKey())
	f.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ln.Close() })
	go f.serveSSH()
	s := New(Config{
		Authority: auth, Trail: audit.NewTrail(st, auditKey, nil), Sessions: fakeSessions{}, Pusher: f,
		Record: func(ctx context.Context, m RecordingMeta) (Recording, error) {
			return f.recorder.start(m)
		},
		KeepAlive: keepAlive,
		Tunnels:   f,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			f.mu.Lock()
			f.dials++
			f.mu.Unlock()
			if addr != "10.0.0.5:2222" {
				return nil, fmt.Errorf("dialled %s, want the private address and SSH port", addr)
			}
			c, err := new(net.Dialer).DialContext(ctx, network, f.ln.Addr().String())
			if err != nil {
				return nil, err
			}
			return &freezable{Conn: c, frozen: f.frozen, closed: make(chan struct{})}, nil
		},
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r)
		f.served <- struct{}{}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) putInstance(hostKey ssh.PublicKey) {
	f.t.Helper()
	err := f.st.PutInstance(f.t.Context(), &postern.Instance{
		ID: testInstance, State: postern.InstanceRunning, PrivateIP: "10.0.0.5", SSHPort: 2222,
		HostKeys: []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey)))},
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// PushKeyAs is the fake api.Server.
func (f *fixture) PushKeyAs(_ context.Context, p *authority.Principal, _ authority.Env, instanceID, osUser, publicKey string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pushErr != nil {
		return "req-1", f.pushErr
	}
	f.pushed = publicKey
	return "req-1", nil
}

// OpenTunnelAs is the fake server's tunnels: an in-memory WebSocket
// whose far end the "endpoint" pipes to the instance.
func (f *fixture) OpenTunnelAs(ctx context.Context, p *authority.Principal, env authority.Env, ep *postern.Endpoint, target string, port int) (tunnel.MessageConn, string, error) {
	f.mu.Lock()
	f.tunnels = append(f.tunnels, fmt.Sprintf("%s %s %s:%d %s", p.User.Name, ep.ID, target, port, env.SourceIP))
	err := f.tunnelErr
	f.mu.Unlock()
	if err != nil {
		return nil, "", err
	}
	tcp, err := new(net.Dialer).DialContext(ctx, "tcp", f.ln.Addr().String())
	if err != nil {
		return nil, "", err
	}
	client, endpoint := tunneltest.Pair()
	go tunnel.Pipe(context.Background(), endpoint, tcp, tunnel.Limits{})
	return client, "tunnel-1", nil
}

// putEndpoint places the instance in a VPC whose subnet has an endpoint
// that joined.
func (f *fixture) putEndpoint() {
	f.t.Helper()
	ctx := f.t.Context()
	must := func(err error) {
		f.t.Helper()
		if err != nil {
			f.t.Fatal(err)
		}
	}
	must(f.st.CreateVPC(ctx, &postern.VPC{ID: "vpc-0123456789abcdef0", CIDR: "10.0.0.0/16", State: "available"}))
	must(f.st.CreateSubnet(ctx, &postern.Subnet{ID: "subnet-0123456789abcdef0", VPCID: "vpc-0123456789abcdef0", CIDR: "10.0.0.0/24", State: "available"}))
	must(f.st.CreateEndpoint(ctx, &postern.Endpoint{ID: "eice-0123456789abcdef0", SubnetID: "subnet-0123456789abcdef0", VPCID: "vpc-0123456789abcdef0",
		State: postern.EndpointCreateInProgress, EndpointSettings: postern.EndpointSettings{AllowedPorts: []int{22, 2222}, MaxConnections: 20, MaxTunnelDuration: time.Hour}}))
	must(f.st.JoinEndpoint(ctx, "eice-0123456789abcdef0", "eice.example.test:8443", time.Now()))
	inst, err := f.st.GetInstance(ctx, testInstance)
	must(err)
	inst.VPCID, inst.SubnetID = "vpc-0123456789abcdef0", "subnet-0123456789abcdef0"
	must(f.st.PutInstance(ctx, inst))
}

type fakeSessions struct{}

func (fakeSessions) Authenticate(*http.Request) (*console.Principal, error) {
	return &console.Principal{Principal: &authority.Principal{
		User: postern.User{Name: "alice", ID: "AIDAALICE"}, ARN: "arn:aws:iam::123456789012:user/alice",
	}}, nil
}

func (fakeSessions) RequireSameOrigin(*http.Request) error { return nil }

// freezable is the link to the instance; once frozen it carries nothing
// more, as when a cable is pulled: no FIN, no RST, until it is closed.
type freezable struct {
	net.Conn
	frozen    chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *freezable) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	select {
	case <-c.frozen:
		<-c.closed // the answer never arrives
		return 0, net.ErrClosed
	default:
	}
	return n, err
}

func (c *freezable) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// serveSSH is the instance: it accepts only the key pushed last.
func (f *fixture) serveSSH() {
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.pushed != string(ssh.MarshalAuthorizedKey(key)) {
			return nil, errors.New("not the pushed key")
		}
		return nil, nil
	}}
	cfg.AddHostKey(f.hostKey)
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer close(f.sshDone)
			sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
			if err != nil {
				return
			}
			defer sc.Close()
			go ssh.DiscardRequests(reqs)
			for nc := range chans {
				ch, creqs, err := nc.Accept()
				if err != nil {
					return
				}
				go shell(ch, creqs)
			}
		}()
	}
}

// shell echoes input, says "size CxR" on window changes and exits on
// "exit".
func shell(ch ssh.Channel, reqs <-chan *ssh.Request) {
	var mu sync.Mutex
	write := func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		ch.Write(b)
	}
	for r := range reqs {
		switch r.Type {
		case "pty-req", "shell":
			r.Reply(true, nil)
			if r.Type == "shell" {
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := ch.Read(buf)
						if err != nil {
							return
						}
						if bytes.Contains(buf[:n], []byte("exit\r")) {
							ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, 3))
							ch.Close()
							return
						}
						write(buf[:n])
					}
				}()
			}
		case "window-change":
			cols, rows := binary.BigEndian.Uint32(r.Payload), binary.BigEndian.Uint32(r.Payload[4:])
			write(fmt.Appendf(nil, "size %dx%d\r\n", cols, rows))
		default:
			r.Reply(false, nil)
		}
	}
}

// fakeRecorder keeps what it is given; failing makes it fail from the
// next event on.
type fakeRecorder struct {
	mu       sync.Mutex
	startErr error
	failAt   int // fail the write after this many output bytes (0: never)
	out, in  bytes.Buffer
	resizes  []string
	closed   bool
}

func (r *fakeRecorder) start(RecordingMeta) (Recording, error) {
	if r.startErr != nil {
		return nil, r.startErr
	}
	return r, nil
}

func (r *fakeRecorder) ID() string { return "rec-test" }

func (r *fakeRecorder) Output(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failAt > 0 && r.out.Len()+len(p) > r.failAt {
		return errors.New("disk full")
	}
	r.out.Write(p)
	return nil
}

func (r *fakeRecorder) Input(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.in.Write(p)
	return nil
}

func (r *fakeRecorder) Resize(cols, rows int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resizes = append(r.resizes, fmt.Sprintf("%dx%d", cols, rows))
	return nil
}

func (r *fakeRecorder) Close(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// client is the browser's side.
type client struct {
	t        *testing.T
	c        *websocket.Conn
	mu       sync.Mutex
	out      bytes.Buffer
	grew     chan struct{}
	controls chan map[string]string
	done     chan struct{}
	err      error
}

func (f *fixture) open() *client {
	f.t.Helper()
	url := strings.Replace(f.srv.URL, "http://", "ws://", 1) + Path + "?instanceId=" + testInstance + "&osUser=alice&cols=80&rows=24"
	c, _, err := websocket.Dial(f.t.Context(), url, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	c.SetReadLimit(-1)
	cl := &client{t: f.t, c: c, grew: make(chan struct{}, 1), controls: make(chan map[string]string, 16), done: make(chan struct{})}
	go func() {
		defer close(cl.done)
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				cl.err = err
				return
			}
			if typ == websocket.MessageText {
				var m map[string]string
				json.Unmarshal(b, &m)
				cl.controls <- m
				continue
			}
			cl.mu.Lock()
			cl.out.Write(b)
			cl.mu.Unlock()
			select {
			case cl.grew <- struct{}{}:
			default:
			}
		}
	}()
	f.t.Cleanup(func() { c.CloseNow(); <-cl.done })
	return cl
}

func (cl *client) send(b []byte) {
	cl.t.Helper()
	if err := cl.c.Write(cl.t.Context(), websocket.MessageBinary, b); err != nil {
		cl.t.Fatal(err)
	}
}

// awaitOutput waits until the output holds want.
func (cl *client) awaitOutput(want []byte) {
	cl.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		cl.mu.Lock()
		ok := bytes.Contains(cl.out.Bytes(), want)
		cl.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-cl.grew:
		case <-cl.done:
			cl.t.Fatalf("the WebSocket ended (%v) before the output held %q", cl.err, truncate(string(want), 60))
		case <-timeout:
			cl.t.Fatalf("the output never held %q", truncate(string(want), 60))
		}
	}
}

// await returns the next control message that is not a connecting status.
func (cl *client) await() map[string]string {
	cl.t.Helper()
	for {
		select {
		case m := <-cl.controls:
			if m["state"] != StateConnecting {
				return m
			}
		case <-time.After(20 * time.Second):
			cl.t.Fatal("no control message")
		}
	}
}

func (cl *client) closeStatus() websocket.StatusCode {
	cl.t.Helper()
	select {
	case <-cl.done:
	case <-time.After(20 * time.Second):
		cl.t.Fatal("the WebSocket did not close")
	}
	return websocket.CloseStatus(cl.err)
}

// lastAudit waits for the terminal request to end and returns the newest
// ConsoleTerminalSession record.
func (f *fixture) lastAudit() map[string]any {
	f.t.Helper()
	select {
	case <-f.served:
	case <-time.After(20 * time.Second):
		f.t.Fatal("the terminal request did not end")
	}
	recs, err := f.st.LookupAudit(f.t.Context(), postern.AuditQuery{EventName: "ConsoleTerminalSession"})
	if err != nil || len(recs) == 0 {
		f.t.Fatalf("no ConsoleTerminalSession record (%v)", err)
	}
	var m map[string]any
	if err := json.Unmarshal(recs[0].Body, &m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

func TestTerminalSession(t *testing.T) {
	f := newFixture(t, 0)
	cl := f.open()
	if m := cl.await(); m["state"] != StateConnected {
		t.Fatalf("got %v, want connected", m)
	}
	cl.send([]byte("hello\r"))
	cl.awaitOutput([]byte("hello\r"))

	b, _ := json.Marshal(Resize{Type: "resize", Cols: 120, Rows: 40})
	if err := cl.c.Write(t.Context(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	cl.awaitOutput([]byte("size 120x40"))
	if err := cl.c.Write(t.Context(), websocket.MessageText, []byte(`{"type":"paste"}`)); err != nil {
		t.Fatal(err)
	}
	if m := cl.await(); m["type"] != "error" || m["code"] != "InvalidMessage" {
		t.Errorf("an unknown control message: %v, want an InvalidMessage error", m)
	}

	// Bytes that are not UTF-8 pass as they are, both ways.
	cl.send([]byte{0xff, 0xfe, 'Z', 0xc3})
	cl.awaitOutput([]byte{0xff, 0xfe, 'Z', 0xc3})

	// A paste far larger than any buffer: 4 MiB in 64 KiB frames, all
	// of it echoed, with a browser that reads concurrently.
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4<<10)
	for range 64 {
		cl.send(chunk)
	}
	cl.send([]byte("END-OF-PASTE"))
	cl.awaitOutput([]byte("END-OF-PASTE"))

	cl.send([]byte("exit\r"))
	if m := cl.await(); m["state"] != StateClosed || m["message"] != "the session ended (exit status 3)" {
		t.Errorf("after exit: %v", m)
	}
	if st := cl.closeStatus(); st != websocket.StatusNormalClosure {
		t.Errorf("close status %v, want 1000", st)
	}
	ev := f.lastAudit()
	f.recorder.mu.Lock()
	if !bytes.Contains(f.recorder.out.Bytes(), []byte("END-OF-PASTE")) || f.recorder.in.Len() < 4<<20 ||
		len(f.recorder.resizes) != 1 || f.recorder.resizes[0] != "120x40" || !f.recorder.closed {
		t.Errorf("recording: %d output bytes, %d input bytes, resizes %v, closed %v",
			f.recorder.out.Len(), f.recorder.in.Len(), f.recorder.resizes, f.recorder.closed)
	}
	f.recorder.mu.Unlock()
	if ev["errorCode"] != nil || ev["userIdentity"].(map[string]any)["userName"] != "alice" ||
		ev["additionalEventData"].(map[string]any)["recordingId"] != "rec-test" {
		t.Errorf("audit record %v", ev)
	}
}

func TestTerminalDenied(t *testing.T) {
	f := newFixture(t, 0)
	f.pushErr = postern.CodedErrorf(postern.KindDenied, "AccessDeniedException", "User alice is not authorized to perform: ec2-instance-connect:SendSSHPublicKey")
	cl := f.open()
	m := cl.await()
	if m["type"] != "error" || m["code"] != "AccessDenied" || !strings.Contains(m["message"], "SendSSHPublicKey") {
		t.Errorf("got %v, want an AccessDenied error", m)
	}
	if st := cl.closeStatus(); st != websocket.StatusPolicyViolation {
		t.Errorf("close status %v, want 1008", st)
	}
}

func TestTerminalHostKeyMismatch(t *testing.T) {
	f := newFixture(t, 0)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(other)
	f.putInstance(signer.PublicKey())
	cl := f.open()
	if m := cl.await(); m["code"] != "HostKeyMismatch" {
		t.Errorf("got %v, want HostKeyMismatch", m)
	}
	if ev := f.lastAudit(); ev["errorCode"] != "HostKeyMismatch" {
		t.Errorf("audit record %v", ev)
	}
}

func TestTerminalRecordingFails(t *testing.T) {
	t.Run("Start", func(t *testing.T) {
		f := newFixture(t, 0)
		f.recorder.startErr = errors.New("read-only file system")
		cl := f.open()
		if m := cl.await(); m["state"] != StateClosed || m["message"] != "recording failed: session ended" {
			t.Errorf("got %v", m)
		}
		if ev := f.lastAudit(); ev["errorCode"] != "RecordingFailed" {
			t.Errorf("audit record %v", ev)
		}
	})
	t.Run("Output", func(t *testing.T) {
		f := newFixture(t, 0)
		f.recorder.failAt = 10
		cl := f.open()
		if m := cl.await(); m["state"] != StateConnected {
			t.Fatalf("got %v", m)
		}
		cl.send([]byte("0123456789ABCDEF\r"))
		if m := cl.await(); m["state"] != StateClosed || m["message"] != "recording failed: session ended" {
			t.Errorf("got %v", m)
		}
		cl.mu.Lock()
		if bytes.Contains(cl.out.Bytes(), []byte("ABCDEF")) {
			t.Errorf("output the recording refused reached the browser: %q", cl.out.Bytes())
		}
		cl.mu.Unlock()
		if ev := f.lastAudit(); ev["errorCode"] != "RecordingFailed" {
			t.Errorf("audit record %v", ev)
		}
	})
}

func TestTerminalLinkDrops(t *testing.T) {
	f := newFixture(t, 50*time.Millisecond)
	cl := f.open()
	if m := cl.await(); m["state"] != StateConnected {
		t.Fatalf("got %v", m)
	}
	close(f.frozen)
	if m := cl.await(); m["state"] != StateClosed || m["message"] != "the connection to "+testInstance+" was lost" {
		t.Errorf("got %v", m)
	}
	if ev := f.lastAudit(); ev["errorCode"] != "ConnectionLost" {
		t.Errorf("audit record %v", ev)
	}
}

func TestTerminalBrowserGone(t *testing.T) {
	f := newFixture(t, 0)
	cl := f.open()
	if m := cl.await(); m["state"] != StateConnected {
		t.Fatalf("got %v", m)
	}
	cl.c.CloseNow()
	select {
	case <-f.sshDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the SSH connection outlived the browser")
	}
	ev := f.lastAudit()
	if ev["errorCode"] != nil || ev["responseElements"].(map[string]any)["ended"] != "the browser went away" {
		t.Errorf("audit record %v", ev)
	}
}

// TestTerminalThroughEndpoint: an instance without a public address, in a
// VPC with an endpoint ready, is reached through a tunnel opened as the
// user, never directly.
func TestTerminalThroughEndpoint(t *testing.T) {
	f := newFixture(t, 0)
	f.putEndpoint()
	cl := f.open()
	m := cl.await()
	if m["state"] != StateConnected || !strings.Contains(m["message"], "through Instance Connect Endpoint eice-0123456789abcdef0") {
		t.Fatalf("got %v, want connected through the endpoint", m)
	}
	cl.send([]byte("hello\r"))
	cl.awaitOutput([]byte("hello\r"))
	cl.send([]byte("exit\r"))
	if m := cl.await(); m["state"] != StateClosed {
		t.Errorf("after exit: %v", m)
	}
	ev := f.lastAudit()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tunnels) != 1 || !strings.HasPrefix(f.tunnels[0], "alice eice-0123456789abcdef0 10.0.0.5:2222 ") || f.dials != 0 {
		t.Errorf("tunnels %q and %d direct dials; want one tunnel as alice to the private address and SSH port", f.tunnels, f.dials)
	}
	extra := ev["additionalEventData"].(map[string]any)
	if ev["errorCode"] != nil || extra["endpointId"] != "eice-0123456789abcdef0" || extra["tunnelId"] != "tunnel-1" {
		t.Errorf("audit record %v", ev)
	}
}

// TestTerminalTunnelDenied: a tunnel the user's policy refuses is an
// AccessDenied naming OpenTunnel, and the session's record says so.
func TestTerminalTunnelDenied(t *testing.T) {
	f := newFixture(t, 0)
	f.putEndpoint()
	f.tunnelErr = &endpointproto.TunnelError{Status: http.StatusForbidden, ErrorCode: "AccessDeniedException", RequestID: "req-9",
		Message: "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: ec2-instance-connect:OpenTunnel on resource: arn:aws:ec2:us-east-1:123456789012:instance-connect-endpoint/eice-0123456789abcdef0"}
	cl := f.open()
	m := cl.await()
	if m["type"] != "error" || m["code"] != "AccessDenied" || m["action"] != "ec2-instance-connect:OpenTunnel" ||
		!strings.Contains(m["message"], "not authorized to perform: ec2-instance-connect:OpenTunnel") || !strings.Contains(m["message"], "req-9") {
		t.Errorf("got %v, want AccessDenied for OpenTunnel", m)
	}
	if st := cl.closeStatus(); st != websocket.StatusPolicyViolation {
		t.Errorf("close status %v, want 1008", st)
	}
	ev := f.lastAudit()
	if ev["errorCode"] != "AccessDenied" || ev["additionalEventData"].(map[string]any)["tunnelId"] != "req-9" {
		t.Errorf("audit record %v", ev)
	}

	// An endpoint that cannot reach the instance.
	f.tunnelErr = &endpointproto.TunnelError{Status: http.StatusBadGateway, ErrorCode: "TargetUnreachable", Message: "connection refused", RequestID: "req-10"}
	cl = f.open()
	if m := cl.await(); m["code"] != "InstanceUnreachable" || !strings.Contains(m["message"], "through Instance Connect Endpoint eice-0123456789abcdef0") {
		t.Errorf("got %v, want InstanceUnreachable through the endpoint", m)
	}
	if st := cl.closeStatus(); st != websocket.StatusTryAgainLater {
		t.Errorf("close status %v, want 1013", st)
	}
}
