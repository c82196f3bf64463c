package consoleterm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/opentunnel"
)

// terminal is one browser terminal session.
type terminal struct {
	s         *Server
	ws        *websocket.Conn
	req       request
	principal *authority.Principal
	sourceIP  netip.Addr
	userAgent string
	start     time.Time

	pushRequestID string
	recordingID   string
	bytesIn       atomic.Int64 // browser → instance
	bytesOut      atomic.Int64 // instance → browser

	// endpointID and tunnelID name the Instance Connect Endpoint and the
	// tunnel the session went through, if it did.
	endpointID, tunnelID string
}

// Why a running session ended; the first reason wins.
var (
	errBrowserGone = errors.New("the browser went away")
	errRecording   = errors.New("recording failed: session ended")
)

// exited is a shell that ended by itself.
type exited struct{ status int }

func (e exited) Error() string {
	if e.status == 0 {
		return "the session ended"
	}
	return fmt.Sprintf("the session ended (exit status %d)", e.status)
}

// lost is an SSH connection that dropped.
type lost struct {
	instanceID string
	err        error
}

func (e lost) Error() string { return "the connection to " + e.instanceID + " was lost" }

func (t *terminal) run(ctx context.Context) {
	// The session outlives nothing but its WebSocket: the request context
	// ends with the connection.
	ctx = context.WithoutCancel(ctx)
	t.status(ctx, StateConnecting, "pushing a one-time key to "+t.req.InstanceID+" as "+t.req.OSUser)
	client, f := t.connect(ctx)
	if f != nil {
		t.fail(ctx, f)
		return
	}
	defer client.Close()
	readerDone, reason := t.serve(ctx, client)
	code := ""
	var l lost
	switch {
	case errors.As(reason, &l):
		code = "ConnectionLost"
		t.s.log.Info("terminal: connection lost", "instance", t.req.InstanceID, "err", l.err)
	case errors.Is(reason, errRecording):
		code = "RecordingFailed"
	}
	// The trail and the recording are complete before the browser hears
	// that the session ended.
	t.audit(ctx, code, reason.Error(), reason.Error())
	t.finish(ctx, reason)
	<-readerDone
}

// connect pushes the ephemeral key as the user and logs in.
func (t *terminal) connect(ctx context.Context) (*ssh.Client, *failure) {
	cfg := t.s.cfg
	signer, pub, err := newKey()
	if err != nil {
		return nil, &failure{code: "InternalError", message: "no randomness for a key", close: websocket.StatusInternalError}
	}
	env := authority.Env{SourceIP: t.sourceIP, Time: time.Now()}
	t.pushRequestID, err = cfg.Pusher.PushKeyAs(ctx, t.principal, env, t.req.InstanceID, t.req.OSUser, pub)
	if err != nil {
		return nil, pushFailure(err)
	}
	inst, err := cfg.Authority.Store().GetInstance(ctx, t.req.InstanceID)
	if err != nil {
		t.s.log.Error("terminal: instance lookup failed", "instance", t.req.InstanceID, "err", err)
		return nil, internalFailure("The instance could not be looked up; the server log has the details.")
	}
	port := inst.SSHPort
	if port <= 0 || port > 65535 {
		port = 22
	}
	hostKeys, algos, err := knownHostKeys(inst.HostKeys)
	if err != nil {
		return nil, &failure{code: "HostKeyUnknown", close: websocket.StatusPolicyViolation,
			message: fmt.Sprintf("Cannot verify %s: %v, so the console will not connect.", inst.ID, err)}
	}
	conn, target, f := t.reach(ctx, inst, port, env)
	if f != nil {
		return nil, f
	}
	// The handshake has no context: a deadline bounds it.
	_ = conn.SetDeadline(time.Now().Add(cfg.ConnectTimeout))
	sc, chans, reqs, err := ssh.NewClientConn(conn, target, &ssh.ClientConfig{
		User: t.req.OSUser, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys, HostKeyAlgorithms: algos, Timeout: cfg.ConnectTimeout,
	})
	if err != nil {
		conn.Close()
		if errors.Is(err, errHostKey) {
			return nil, &failure{code: "HostKeyMismatch", close: websocket.StatusPolicyViolation,
				message: fmt.Sprintf("%s at %s presented a host key its agent did not report; the console did not log in.", inst.ID, target)}
		}
		return nil, t.unreachable(inst, fmt.Sprintf("the SSH login as %s at %s failed (%v)", t.req.OSUser, target, err))
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

func internalFailure(msg string) *failure {
	return &failure{code: "InternalError", message: msg, close: websocket.StatusInternalError}
}

// unreachable is a failure to reach the instance's sshd, saying how the
// console tried.
func (t *terminal) unreachable(inst *postern.Instance, why string) *failure {
	how := "directly"
	if t.endpointID != "" {
		how = "through Instance Connect Endpoint " + t.endpointID
	}
	return &failure{code: "InstanceUnreachable", close: websocket.StatusTryAgainLater,
		message: fmt.Sprintf("Cannot reach %s %s: %s.", inst.ID, how, why)}
}

// reach connects to the instance's sshd the way postern ssh does with
// --connection-type auto (opentunnel.ChooseRoute): its public address
// directly; else its private address through an Instance Connect Endpoint
// of its VPC, preferably in its subnet, opened as the user; or, when its
// VPC has no endpoint ready, its private address directly. It returns the
// connection and the address it reached.
func (t *terminal) reach(ctx context.Context, inst *postern.Instance, port int, env authority.Env) (net.Conn, string, *failure) {
	cfg := t.s.cfg
	if inst.PublicIP == "" && inst.PrivateIP == "" {
		return nil, "", t.unreachable(inst, "its agent reported no address")
	}
	endpoints := map[string]*postern.Endpoint{}
	route, err := opentunnel.ChooseRoute(ctx, opentunnel.Addresses{
		ID: inst.ID, PublicIP: inst.PublicIP, PrivateIP: inst.PrivateIP, VpcID: inst.VPCID, SubnetID: inst.SubnetID,
	}, opentunnel.ConnectionAuto, false, func(ctx context.Context, i opentunnel.Instance) (opentunnel.Endpoint, error) {
		all, err := cfg.Authority.Store().ListEndpoints(ctx, nil)
		if err != nil {
			return opentunnel.Endpoint{}, err
		}
		candidates := make([]opentunnel.Endpoint, len(all))
		for n := range all {
			e := &all[n]
			endpoints[e.ID] = e
			candidates[n] = opentunnel.Endpoint{ID: e.ID, DNSName: e.DNSName, VpcID: e.VPCID, SubnetID: e.SubnetID, State: e.State}
		}
		return opentunnel.PickEndpoint(i, candidates)
	})
	if err != nil {
		t.s.log.Error("terminal: choosing the way to the instance failed", "instance", inst.ID, "err", err)
		return nil, "", internalFailure("The way to the instance could not be looked up; the server log has the details.")
	}
	addr, err := netip.ParseAddr(route.Addr)
	if err != nil {
		return nil, "", t.unreachable(inst, fmt.Sprintf("its agent reported no usable address (%q)", truncate(route.Addr, 64)))
	}
	target := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	if route.Endpoint != nil {
		return t.tunnel(ctx, inst, endpoints[route.Endpoint.ID], addr, port, env)
	}
	if addr.IsLoopback() && !cfg.AllowLoopback || addr.IsUnspecified() || addr.IsLinkLocalUnicast() || addr.IsMulticast() {
		return nil, "", t.unreachable(inst, fmt.Sprintf("its agent reported no usable address (%q)", truncate(route.Addr, 64)))
	}
	t.status(ctx, StateConnecting, "connecting to "+inst.ID+" at "+target)
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	conn, err := cfg.Dial(dctx, "tcp", target)
	if err != nil {
		why := fmt.Sprintf("%s does not answer (%v)", target, err)
		if route.Addr == inst.PrivateIP {
			why += fmt.Sprintf("; the instance has no public address and its VPC %s has no Instance Connect Endpoint ready to reach it through", orNone(inst.VPCID))
		}
		return nil, "", t.unreachable(inst, why)
	}
	return conn, target, nil
}

// tunnel opens a tunnel to addr:port through ep as the user and returns
// it as a connection.
func (t *terminal) tunnel(ctx context.Context, inst *postern.Instance, ep *postern.Endpoint, addr netip.Addr, port int, env authority.Env) (net.Conn, string, *failure) {
	cfg := t.s.cfg
	t.endpointID = ep.ID
	target := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	if cfg.Tunnels == nil {
		return nil, "", t.unreachable(inst, "this server does not open tunnels for the console")
	}
	t.status(ctx, StateConnecting, fmt.Sprintf("connecting to %s at %s through Instance Connect Endpoint %s", inst.ID, target, ep.ID))
	// Setting a tunnel up takes the endpoint's own dial of the target.
	dctx, cancel := context.WithTimeout(ctx, 3*cfg.ConnectTimeout)
	defer cancel()
	ws, id, err := cfg.Tunnels.OpenTunnelAs(dctx, t.principal, env, ep, addr.String(), port)
	if err != nil {
		return nil, "", t.tunnelFailure(inst, ep, target, err)
	}
	t.tunnelID = id
	conn, ended := opentunnel.Conn(ws)
	go func() {
		if err := <-ended; err != nil {
			t.s.log.Info("terminal: tunnel ended", "instance", inst.ID, "endpoint", ep.ID, "tunnel", id, "err", err)
		}
	}()
	return conn, target, nil
}

// tunnelFailure turns an endpoint's refusal, or a failure to reach it,
// into what the browser is shown. The OpenTunnel decision is in the
// trail already; the session's record says how it ended.
func (t *terminal) tunnelFailure(inst *postern.Instance, ep *postern.Endpoint, target string, err error) *failure {
	var te *endpointproto.TunnelError
	if !errors.As(err, &te) {
		var pe *postern.Error
		if errors.As(err, &pe) && pe.Kind != postern.KindInternal && pe.Kind != postern.KindOther {
			return t.unreachable(inst, pe.Message)
		}
		if !errors.As(err, new(*opentunnel.DialError)) && !errors.Is(err, context.DeadlineExceeded) {
			t.s.log.Error("terminal: opening a tunnel failed", "instance", inst.ID, "endpoint", ep.ID, "err", err)
		}
		return t.unreachable(inst, fmt.Sprintf("the tunnel to %s could not be opened (%v)", target, err))
	}
	t.tunnelID = te.RequestID
	detail := te.Message
	if te.RequestID != "" {
		detail += " (request id " + te.RequestID + ")"
	}
	switch {
	case te.Status == http.StatusForbidden && te.ErrorCode == "AccessDeniedException":
		return &failure{code: "AccessDenied", action: "ec2-instance-connect:OpenTunnel", close: websocket.StatusPolicyViolation, message: detail}
	case te.Status == http.StatusTooManyRequests:
		return &failure{code: te.ErrorCode, close: websocket.StatusTryAgainLater, message: detail}
	case te.Status >= 500 && te.ErrorCode != "ServiceException":
		return t.unreachable(inst, fmt.Sprintf("the endpoint could not open the tunnel to %s: %s", target, detail))
	case te.Status >= 500:
		return &failure{code: "InternalError", close: websocket.StatusInternalError, message: detail}
	}
	code := te.ErrorCode
	if code == "" {
		code = "TunnelRefused"
	}
	return &failure{code: code, close: websocket.StatusPolicyViolation, message: detail}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// serve records and bridges the shell until it ends, and says why. The
// recording is closed when it returns; the browser's reader runs until
// the WebSocket closes, and readerDone says when it has.
func (t *terminal) serve(ctx context.Context, client *ssh.Client) (readerDone chan struct{}, reason error) {
	cfg := t.s.cfg
	readerDone = make(chan struct{})
	if cfg.Record == nil {
		close(readerDone)
		return readerDone, errRecording
	}
	r, err := cfg.Record(ctx, RecordingMeta{
		User: t.principal.User.Name, UserARN: t.principal.ARN,
		InstanceID: t.req.InstanceID, OSUser: t.req.OSUser, SourceIP: t.sourceIP.String(),
		Cols: t.req.Cols, Rows: t.req.Rows, Started: t.start,
	})
	if err != nil {
		t.s.log.Error("terminal: cannot start the recording", "instance", t.req.InstanceID, "err", err)
		close(readerDone)
		return readerDone, errRecording
	}
	t.recordingID = r.ID()
	rec := &guardedRecording{r: r}
	defer func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := rec.Close(cctx); err != nil && !errors.Is(reason, errRecording) {
			t.s.log.Error("terminal: cannot complete the recording", "recording", t.recordingID, "err", err)
			reason = errRecording
		}
	}()

	sctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	fail := func(what string, err error) {
		if errors.Is(err, errRecordingClosed) {
			return // the session is ending anyway
		}
		t.s.log.Error("terminal: recording failed", "recording", t.recordingID, "what", what, "err", err)
		end(errRecording)
	}
	// Writes to the browser get this context: cancelling it closes the
	// WebSocket, so it is cancelled only when a stalled browser holds the
	// end of the session up.
	wctx, cancelWrites := context.WithCancel(ctx)
	defer cancelWrites()

	sess, err := client.NewSession()
	if err != nil {
		close(readerDone)
		return readerDone, lost{t.req.InstanceID, err}
	}
	defer sess.Close()
	out := &output{t: t, rec: rec, ctx: sctx, wctx: wctx, end: end, fail: fail}
	sess.Stdout, sess.Stderr = out, out
	stdin, err := sess.StdinPipe()
	if err == nil {
		modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
		err = sess.RequestPty("xterm-256color", t.req.Rows, t.req.Cols, modes)
	}
	if err == nil {
		err = sess.Shell()
	}
	if err != nil {
		close(readerDone)
		return readerDone, lost{t.req.InstanceID, err}
	}
	connected := "connected to " + t.req.InstanceID + " as " + t.req.OSUser
	if t.endpointID != "" {
		connected += " through Instance Connect Endpoint " + t.endpointID
	}
	t.status(sctx, StateConnected, connected)

	var wg sync.WaitGroup
	wg.Go(func() {
		err := sess.Wait()
		var ee *ssh.ExitError
		switch {
		case err == nil:
			end(exited{0})
		case errors.As(err, &ee):
			end(exited{ee.ExitStatus()})
		default:
			end(lost{t.req.InstanceID, err})
		}
	})
	wg.Go(func() {
		if err := client.Wait(); err != nil {
			end(lost{t.req.InstanceID, err})
		}
	})
	wg.Go(func() { t.keepAlive(sctx, wctx, client, end) })
	go func() {
		defer close(readerDone)
		t.input(sctx, sess, stdin, rec, end, fail)
	}()

	<-sctx.Done()
	// Closing the connection unblocks whatever waits on the instance.
	client.Close()
	stall := time.AfterFunc(5*time.Second, cancelWrites)
	defer stall.Stop()
	wg.Wait()
	return readerDone, context.Cause(sctx)
}

// errRecordingClosed refuses events after the recording was closed.
var errRecordingClosed = errors.New("the recording is closed")

// guardedRecording serialises a session's recording and refuses events
// once it is closed: nothing reaches the file after its end.
type guardedRecording struct {
	mu     sync.Mutex
	r      Recording
	closed bool
}

func (g *guardedRecording) do(f func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errRecordingClosed
	}
	return f()
}

func (g *guardedRecording) Output(p []byte) error { return g.do(func() error { return g.r.Output(p) }) }
func (g *guardedRecording) Input(p []byte) error  { return g.do(func() error { return g.r.Input(p) }) }
func (g *guardedRecording) Resize(cols, rows int) error {
	return g.do(func() error { return g.r.Resize(cols, rows) })
}

func (g *guardedRecording) Close(ctx context.Context) error {
	return g.do(func() error {
		g.closed = true
		return g.r.Close(ctx)
	})
}

// output writes the instance's bytes to the recording, then to the
// browser, as one binary frame per write; a slow browser slows the SSH
// channel down (its window) rather than filling memory.
type output struct {
	t         *terminal
	rec       *guardedRecording
	ctx, wctx context.Context
	end       context.CancelCauseFunc
	fail      func(string, error)
	mu        sync.Mutex
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctx.Err() != nil {
		return 0, context.Cause(o.ctx)
	}
	if err := o.rec.Output(p); err != nil {
		o.fail("output", err)
		return 0, errRecording
	}
	if err := o.t.ws.Write(o.wctx, websocket.MessageBinary, p); err != nil {
		o.end(errBrowserGone)
		return 0, errBrowserGone
	}
	o.t.bytesOut.Add(int64(len(p)))
	return len(p), nil
}

// input reads the browser's frames one at a time: each binary frame is
// recorded and written to the shell before the next is read, so a huge
// paste waits on the SSH window instead of piling up in memory. Once the
// session is over it only drains the WebSocket until it closes.
func (t *terminal) input(ctx context.Context, sess *ssh.Session, stdin io.WriteCloser, rec *guardedRecording, end context.CancelCauseFunc, fail func(string, error)) {
	for {
		// Reading must not be cancelled: that would close the WebSocket
		// before the session's end is told.
		typ, b, err := t.ws.Read(context.WithoutCancel(ctx))
		if err != nil {
			end(errBrowserGone)
			return
		}
		if ctx.Err() != nil {
			continue
		}
		switch typ {
		case websocket.MessageBinary:
			if err := rec.Input(b); err != nil {
				fail("input", err)
				continue
			}
			if _, err := stdin.Write(b); err != nil {
				end(lost{t.req.InstanceID, err})
				continue
			}
			t.bytesIn.Add(int64(len(b)))
		case websocket.MessageText:
			m, err := parseControl(b)
			if err != nil {
				t.send(ctx, Error{Type: "error", Code: "InvalidMessage", Message: err.Error()})
				continue
			}
			if err := rec.Resize(m.Cols, m.Rows); err != nil {
				fail("resize", err)
				continue
			}
			if err := sess.WindowChange(m.Rows, m.Cols); err != nil {
				end(lost{t.req.InstanceID, err})
			}
		}
	}
}

// keepAlive pings the browser and the instance every KeepAlive. Three
// pings in a row without an answer on one side end the session: the
// instance is gone even if TCP has not noticed yet, or the browser is.
// A ping waits behind the data in flight, so a busy session is never
// taken for a dead one before three intervals pass.
func (t *terminal) keepAlive(ctx, wctx context.Context, client *ssh.Client, end context.CancelCauseFunc) {
	tick := time.NewTicker(t.s.cfg.KeepAlive)
	defer tick.Stop()
	var sshMissed, wsMissed atomic.Int32
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if sshMissed.Add(1) > 3 {
			end(lost{t.req.InstanceID, errors.New("no answer to SSH keepalives")})
			return
		}
		if wsMissed.Add(1) > 3 {
			end(errBrowserGone)
			return
		}
		go func() {
			// A reply, even a refusal, proves the connection is alive.
			if _, _, err := client.SendRequest("keepalive@openssh.com", true, nil); err == nil {
				sshMissed.Store(0)
			}
		}()
		go func() {
			if t.ws.Ping(wctx) == nil {
				wsMissed.Store(0)
			}
		}()
	}
}

// status sends a Status message; a browser that is gone is noticed by the
// reader.
func (t *terminal) status(ctx context.Context, state, msg string) {
	t.send(ctx, Status{Type: "status", State: state, Message: msg})
}

func (t *terminal) send(ctx context.Context, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = t.ws.Write(wctx, websocket.MessageText, b)
}

// fail ends a session that could not start: an Error message, a close,
// and an audit record unless the refusal is audited already.
func (t *terminal) fail(ctx context.Context, f *failure) {
	if !f.audited {
		t.audit(ctx, f.code, f.message, "failed to start")
	}
	t.send(ctx, Error{Type: "error", Code: f.code, Message: f.message, Action: f.action})
	t.ws.Close(f.close, truncate(f.code, 120))
}

// finish tells the browser why a session that started ended, and closes
// the WebSocket.
func (t *terminal) finish(ctx context.Context, reason error) {
	if errors.Is(reason, errBrowserGone) {
		t.ws.CloseNow()
		return
	}
	var e exited
	status := websocket.StatusInternalError
	switch {
	case errors.As(reason, &e):
		status = websocket.StatusNormalClosure
	case errors.As(reason, new(lost)):
		status = websocket.StatusGoingAway
	}
	t.status(ctx, StateClosed, reason.Error())
	t.ws.Close(status, truncate(reason.Error(), 120))
}

// audit writes the session's record: who, from where, to which instance,
// how much, and how it ended.
func (t *terminal) audit(ctx context.Context, code, msg, ended string) {
	auth := t.s.cfg.Authority
	cfg := auth.Config()
	arn := auth.EC2ARN("instance", t.req.InstanceID)
	p := t.principal
	ev := &audit.Event{
		EventTime: t.start.UTC(), EventSource: "ec2-instance-connect.amazonaws.com", EventName: "ConsoleTerminalSession",
		AWSRegion: cfg.Region, SourceIPAddress: t.sourceIP.String(), UserAgent: t.userAgent,
		UserIdentity: audit.UserIdentity{Type: "IAMUser", PrincipalID: p.User.ID, ARN: p.ARN, AccountID: cfg.Account, UserName: p.User.Name},
		RequestParameters: map[string]any{
			"instanceId": t.req.InstanceID, "osUser": t.req.OSUser, "cols": t.req.Cols, "rows": t.req.Rows,
		},
		ResponseElements: map[string]any{"ended": ended},
		AdditionalEventData: map[string]any{
			"invokedBy": "postern-console", "keyPushRequestId": t.pushRequestID, "recordingId": t.recordingID,
			"bytesIn": t.bytesIn.Load(), "bytesOut": t.bytesOut.Load(),
			"durationSeconds": time.Since(t.start).Round(time.Millisecond).Seconds(),
		},
		ErrorCode: code, RequestID: uuid.NewString(), EventType: "PosternTerminal", RecipientAccountID: cfg.Account,
		Resources: []audit.Resource{{ARN: arn, AccountID: cfg.Account, Type: "AWS::EC2::Instance"}},
	}
	if t.endpointID != "" {
		ev.AdditionalEventData["endpointId"] = t.endpointID
		ev.AdditionalEventData["tunnelId"] = t.tunnelID
		epARN := auth.EC2ARN("instance-connect-endpoint", t.endpointID)
		ev.Resources = append(ev.Resources, audit.Resource{ARN: epARN, AccountID: cfg.Account, Type: "AWS::EC2::InstanceConnectEndpoint"})
	}
	if code != "" {
		ev.ErrorMessage = truncate(msg, 512)
		ev.ResponseElements = nil
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := t.s.cfg.Trail.Record(actx, ev); err != nil {
		t.s.log.Error("terminal: audit write failed", "instance", t.req.InstanceID, "err", err)
	}
}
