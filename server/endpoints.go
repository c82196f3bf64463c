package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/pki"
	"github.com/postern-dev/postern/tunnel"
)

// relayWait bounds how long a relayed handshake waits for the endpoint to
// dial the target and the server back.
const relayWait = 20 * time.Second

// endpointHub holds the control sessions of the endpoint processes
// connected to this replica, and the relayed tunnels waiting for their
// endpoint's dial-back. Live tunnels are counted in the store, where every
// process and replica shares the count.
type endpointHub struct {
	mu       sync.Mutex
	sessions map[string]map[string]*endpointSession // by endpoint id, then process
	relays   map[string]relayWaiter                 // by tunnel id, while the server waits
}

// relayWaiter is a relayed tunnel waiting for its endpoint's dial-back.
type relayWaiter struct {
	endpointID string
	back       chan relayDialBack
}

// relayDialBack is what the endpoint answered to a dial: a WebSocket to
// splice to the client's, or why it could not set the tunnel up.
type relayDialBack struct {
	conn *websocket.Conn
	err  *endpointproto.TunnelError
	done chan struct{} // closed when the splice ends
}

// endpointSession is one endpoint process's control connection.
type endpointSession struct {
	endpointID string
	process    string
	mode       string // endpointproto.ModeListen, ModeRelay, or "" when the process did not say
	send       chan endpointproto.Control
	closed     chan struct{}
}

const (
	processTouch = endpointproto.ProcessTouch
	processStale = endpointproto.ProcessStale
)

func newEndpointHub() *endpointHub {
	return &endpointHub{sessions: map[string]map[string]*endpointSession{}, relays: map[string]relayWaiter{}}
}

// deliver queues msg for one session; it reports false when the session
// has closed.
func (sess *endpointSession) deliver(msg endpointproto.Control) bool {
	select {
	case sess.send <- msg:
		return true
	case <-sess.closed:
		return false
	}
}

// tell queues msg for every process of the endpoint connected here; it
// reports false when none is.
func (h *endpointHub) tell(id string, msg endpointproto.Control) bool {
	h.mu.Lock()
	var sessions []*endpointSession
	for _, sess := range h.sessions[id] {
		sessions = append(sessions, sess)
	}
	h.mu.Unlock()
	told := false
	for _, sess := range sessions {
		told = sess.deliver(msg) || told
	}
	return told
}

// pick returns one process of the endpoint connected here, chosen
// uniformly at random, or nil.
func (h *endpointHub) pick(id string) *endpointSession {
	return h.pickWhere(id, func(*endpointSession) bool { return true })
}

// pickRelay returns one relay-mode process of the endpoint connected here,
// chosen uniformly at random, or nil.
func (h *endpointHub) pickRelay(id string) *endpointSession {
	return h.pickWhere(id, func(sess *endpointSession) bool { return sess.mode == endpointproto.ModeRelay })
}

// pickWhere returns one of the endpoint's processes connected here for
// which ok holds, each as likely as the others, or nil. (A map's iteration
// order is not a fair draw: with two entries, one comes first seven times
// in eight.)
func (h *endpointHub) pickWhere(id string, ok func(*endpointSession) bool) *endpointSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	var chosen *endpointSession
	n := 0
	for _, sess := range h.sessions[id] {
		if !ok(sess) {
			continue
		}
		// Reservoir sampling: the k-th candidate replaces the choice with
		// probability 1/k.
		n++
		if rand.IntN(n) == 0 {
			chosen = sess
		}
	}
	return chosen
}

// reserveTunnel returns a TunnelReserver that counts a tunnel carried by
// process against ep's connection limit, shared by all its processes.
func (s *Server) reserveTunnel(ep *postern.Endpoint, process string) api.TunnelReserver {
	return func(t *endpointproto.Tunnel) (func(), error) {
		detail, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		lt := &postern.LiveTunnel{ID: t.ID, EndpointID: ep.ID, ProcessID: process, OpenedAt: now, Detail: detail}
		if err := s.store.OpenTunnel(s.baseCtx, lt, ep.MaxConnections, now.Add(-processStale)); err != nil {
			return nil, err
		}
		return func() { s.forgetTunnel(t.ID) }, nil
	}
}

// forgetTunnel gives back the place of a tunnel that never got going (its
// endpoint will not report it closed).
func (s *Server) forgetTunnel(id string) {
	if _, err := s.store.CloseTunnel(context.WithoutCancel(s.baseCtx), id); err != nil && !postern.IsKind(err, postern.KindNotFound) {
		s.log.Warn("cannot give back a tunnel's place", "tunnel", id, "err", err)
	}
}

// onEndpointChange tells an endpoint's process of new settings or of its
// deletion. An endpoint being deleted with no process connected has no
// tunnels to close here, so its deletion completes at once.
func (s *Server) onEndpointChange(e *postern.Endpoint) {
	if s.cluster != nil {
		// Its processes may be connected to any replica: every replica,
		// this one included, tells its own (tellEndpointChange).
		if err := s.cluster.EndpointChanged(context.WithoutCancel(s.baseCtx), e.ID); err != nil {
			s.log.Error("cannot announce an endpoint change to the other replicas", "endpoint", e.ID, "err", err)
			s.tellEndpointChange(e)
		}
		return
	}
	s.tellEndpointChange(e)
}

// tellEndpointChange tells the endpoint's processes connected here of new
// settings or of its deletion. An endpoint being deleted with no process
// connected anywhere has no tunnels to close, so its deletion completes at
// once; otherwise it completes when a process reports its tunnels closed.
func (s *Server) tellEndpointChange(e *postern.Endpoint) {
	if e.State == postern.EndpointDeleteInProgress {
		if s.endpoints.tell(e.ID, endpointproto.Control{Type: endpointproto.ControlDelete}) {
			return
		}
		ctx := context.WithoutCancel(s.baseCtx)
		if s.cluster != nil {
			if n, err := s.store.LiveEndpointProcesses(ctx, e.ID, time.Now().Add(-processStale)); err != nil || n > 0 {
				return // another replica's processes report the deletion
			}
		}
		if err := s.auth.CompleteEndpointDeletion(ctx, e.ID); err != nil && !postern.IsKind(err, postern.KindConflict) {
			s.log.Warn("completing an endpoint's deletion failed", "endpoint", e.ID, "err", err)
		}
		return
	}
	set := endpointproto.SettingsOf(e.EndpointSettings)
	s.endpoints.tell(e.ID, endpointproto.Control{Type: endpointproto.ControlSettings, Settings: &set})
}

// onAnnouncedEndpointChange is a replica's part of an announced change.
func (s *Server) onAnnouncedEndpointChange(id string) {
	e, err := s.store.GetEndpoint(context.WithoutCancel(s.baseCtx), id)
	if err != nil {
		s.log.Warn("cannot read an endpoint another replica changed", "endpoint", id, "err", err)
		return
	}
	s.tellEndpointChange(e)
}

// endpointCaller authenticates an endpoint process by its join credential
// and answers the request itself when that fails. An endpoint being deleted
// is accepted only where allowDeleting: it still reports and relays the
// tunnels its deletion closes.
func (s *Server) endpointCaller(w http.ResponseWriter, r *http.Request, allowDeleting bool) (*postern.Endpoint, bool) {
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	var ep *postern.Endpoint
	var err error = postern.CodedErrorf(postern.KindUnauthenticated, "AuthFailure", "The endpoint credential is not valid")
	if ok {
		ep, err = s.auth.VerifyEndpointCredential(r.Context(), cred)
	}
	if allowDeleting && postern.IsKind(err, postern.KindConflict) {
		// The credential matched; the endpoint is no longer live.
		id, _, _ := strings.Cut(cred, ".")
		if ep, err = s.store.GetEndpoint(r.Context(), id); err == nil {
			return ep, true
		}
	}
	if err == nil {
		return ep, true
	}
	code, msg, status := "AuthFailure", "The endpoint credential is not valid", http.StatusUnauthorized
	var pe *postern.Error
	switch {
	case errors.As(err, &pe) && pe.Kind == postern.KindConflict:
		code, msg, status = pe.Code, pe.Message, http.StatusConflict
	case !errors.As(err, &pe) || pe.Kind == postern.KindInternal || pe.Kind == postern.KindOther:
		s.log.Error("verifying an endpoint credential failed", "err", err)
		code, msg, status = "ServiceException", "internal error", http.StatusInternalServerError
	}
	s.recordEndpointEvent(r, "EndpointAuthenticate", "", code, msg, map[string]any{"path": r.URL.Path})
	writeJSON(w, status, endpointproto.ErrorResponse{Code: code, Message: msg})
	return nil, false
}

// recordEndpointEvent audits something an endpoint process did.
func (s *Server) recordEndpointEvent(r *http.Request, name, endpointID, code, msg string, params map[string]any) {
	ev := &audit.Event{
		EventSource: "ec2-instance-connect.amazonaws.com", EventName: name, AWSRegion: s.cfg.Region,
		SourceIPAddress: sourceAddr(r), UserAgent: r.UserAgent(), RequestParameters: params,
		UserIdentity: audit.UserIdentity{Type: "Unknown", PrincipalID: endpointID, AccountID: s.info.Account},
		ErrorCode:    code, ErrorMessage: msg, EventType: "AwsApiCall", RecipientAccountID: s.info.Account,
	}
	if endpointID != "" {
		arn := s.auth.EC2ARN("instance-connect-endpoint", endpointID)
		ev.Resources = []audit.Resource{{ARN: arn, AccountID: s.info.Account, Type: "AWS::EC2::InstanceConnectEndpoint"}}
	}
	if _, err := s.trail.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		s.log.Error("audit write failed for an endpoint event", "event", name, "err", err)
	}
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "ValidationException", Message: "the request body is not valid JSON of the expected shape"})
		return false
	}
	return true
}

// handleEndpointJoin records an endpoint process's start.
func (s *Server) handleEndpointJoin(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.endpointCaller(w, r, false)
	if !ok {
		return
	}
	var req endpointproto.JoinRequest
	if !readJSON(w, r, &req) {
		return
	}
	fail := func(status int, code, msg string) {
		s.recordEndpointEvent(r, "JoinInstanceConnectEndpoint", ep.ID, code, msg, map[string]any{"mode": req.Mode})
		writeJSON(w, status, endpointproto.ErrorResponse{Code: code, Message: msg})
	}
	dnsName := req.DNSName
	switch req.Mode {
	case endpointproto.ModeListen:
		if dnsName == "" {
			fail(http.StatusBadRequest, "ValidationException", "a listen-mode endpoint must say where clients reach it (DNSName)")
			return
		}
	case endpointproto.ModeRelay:
		if dnsName == "" {
			dnsName = r.Host
		}
	default:
		fail(http.StatusBadRequest, "ValidationException", `mode must be "listen" or "relay"`)
		return
	}
	host := dnsName
	if h, _, err := net.SplitHostPort(dnsName); err == nil {
		host = h
	}
	if host == "" || len(dnsName) > 253 || strings.ContainsAny(dnsName, "/?#@ \t") {
		fail(http.StatusBadRequest, "ValidationException", "DNSName must be host or host:port")
		return
	}
	var chain [][]byte
	if len(req.CertPublicKey) > 0 {
		var err error
		chain, err = pki.IssueLeaf(s.cfg.DataDir, req.CertPublicKey, host, time.Now())
		if errors.Is(err, os.ErrNotExist) {
			fail(http.StatusBadRequest, "ValidationException", "this server uses an operator's TLS certificate and has no CA of its own: give the endpoint its own certificate (--tls-cert, --tls-key)")
			return
		}
		if err != nil {
			fail(http.StatusBadRequest, "ValidationException", err.Error())
			return
		}
	}
	id := ep.ID
	ep, err := s.auth.JoinEndpoint(r.Context(), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), dnsName)
	if err != nil {
		var pe *postern.Error
		if errors.As(err, &pe) && pe.Kind != postern.KindInternal && pe.Kind != postern.KindOther {
			fail(http.StatusConflict, pe.Code, pe.Message)
			return
		}
		s.log.Error("endpoint join failed", "endpoint", id, "err", err)
		fail(http.StatusInternalServerError, "ServiceException", "internal error")
		return
	}
	vpc, err := s.store.GetVPC(r.Context(), ep.VPCID)
	if err != nil {
		s.log.Error("endpoint join: reading its VPC failed", "endpoint", ep.ID, "err", err)
		fail(http.StatusInternalServerError, "ServiceException", "internal error")
		return
	}
	s.recordEndpointEvent(r, "JoinInstanceConnectEndpoint", ep.ID, "", "", map[string]any{"mode": req.Mode, "dnsName": dnsName, "version": req.Version})
	writeJSON(w, http.StatusOK, endpointproto.JoinResponse{
		EndpointID: ep.ID, ARN: s.auth.EC2ARN("instance-connect-endpoint", ep.ID), VPCID: ep.VPCID, SubnetID: ep.SubnetID,
		VPCCIDRs: []string{vpc.CIDR}, DNSName: ep.DNSName, Region: s.cfg.Region,
		Settings: endpointproto.SettingsOf(ep.EndpointSettings), Certificate: chain,
	})
}

// handleEndpointControl runs an endpoint process's control connection.
func (s *Server) handleEndpointControl(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.endpointCaller(w, r, true)
	if !ok {
		return
	}
	if ep.State == postern.EndpointDeleteComplete {
		// Its deletion completed while the process was away: tell it to
		// stop, rather than have it retry for ever.
		writeJSON(w, http.StatusGone, endpointproto.ErrorResponse{Code: "IncorrectState",
			Message: "Instance Connect Endpoint " + ep.ID + " was deleted"})
		return
	}
	process, ok := processName(w, r.URL.Query().Get(endpointproto.ParamProcess))
	if !ok {
		return
	}
	if err := s.store.TouchEndpointProcess(r.Context(), ep.ID, process, time.Now()); err != nil {
		s.log.Error("cannot record an endpoint process", "endpoint", ep.ID, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, endpointproto.ErrorResponse{Code: "ServiceException", Message: "internal error"})
		return
	}
	mode := r.URL.Query().Get(endpointproto.ParamMode)
	if mode != endpointproto.ModeListen && mode != endpointproto.ModeRelay {
		mode = "" // an endpoint process older than the console's tunnels
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	c.SetReadLimit(64 << 10)
	sess := &endpointSession{endpointID: ep.ID, process: process, mode: mode, send: make(chan endpointproto.Control, 64), closed: make(chan struct{})}
	h := s.endpoints
	h.mu.Lock()
	if h.sessions[ep.ID] == nil {
		h.sessions[ep.ID] = map[string]*endpointSession{}
	}
	old := h.sessions[ep.ID][process]
	h.sessions[ep.ID][process] = sess
	h.mu.Unlock()
	if old != nil {
		s.log.Warn("an endpoint process replaced its own earlier control connection", "endpoint", ep.ID, "process", process)
	}
	if s.cluster != nil {
		// Other replicas route relayed tunnels for this process here.
		if err := s.cluster.HoldEndpointProcess(r.Context(), ep.ID, process, mode == endpointproto.ModeRelay); err != nil {
			s.log.Warn("cannot record an endpoint process in the cluster", "endpoint", ep.ID, "process", process, "err", err)
		}
	}
	defer func() {
		h.mu.Lock()
		last := h.sessions[ep.ID][process] == sess
		if last {
			delete(h.sessions[ep.ID], process)
			if len(h.sessions[ep.ID]) == 0 {
				delete(h.sessions, ep.ID)
			}
		}
		h.mu.Unlock()
		close(sess.closed)
		if last && s.cluster != nil {
			if err := s.cluster.ReleaseEndpointProcess(context.WithoutCancel(s.baseCtx), ep.ID, process); err != nil {
				s.log.Warn("cannot release an endpoint process in the cluster", "endpoint", ep.ID, "process", process, "err", err)
			}
		}
	}()

	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	// The state may have moved while the process was away.
	set := endpointproto.SettingsOf(ep.EndpointSettings)
	sess.send <- endpointproto.Control{Type: endpointproto.ControlSettings, Settings: &set}
	if cur, err := s.store.GetEndpoint(ctx, ep.ID); err == nil && cur.State == postern.EndpointDeleteInProgress {
		sess.send <- endpointproto.Control{Type: endpointproto.ControlDelete}
	}
	go func() {
		defer cancel()
		for {
			var msg endpointproto.Control
			if err := wsjson.Read(ctx, c, &msg); err != nil {
				return
			}
			if msg.Type == endpointproto.ControlDeleted {
				if err := s.auth.CompleteEndpointDeletion(ctx, ep.ID); err != nil {
					s.log.Warn("completing an endpoint's deletion failed", "endpoint", ep.ID, "err", err)
				}
				s.recordEndpointEvent(r, "DeleteInstanceConnectEndpointComplete", ep.ID, "", "", nil)
				c.Close(websocket.StatusNormalClosure, "deleted")
				return
			}
		}
	}()
	// A process that answers pings is alive: record it, so that its
	// tunnels keep counting against the endpoint's limit.
	ping := time.NewTicker(processTouch)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			c.CloseNow()
			return
		case msg := <-sess.send:
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			err := wsjson.Write(wctx, c, msg)
			wcancel()
			if err != nil {
				c.CloseNow()
				return
			}
		case <-ping.C:
			pctx, pcancel := context.WithTimeout(ctx, processTouch)
			err := c.Ping(pctx)
			pcancel()
			if err != nil {
				c.CloseNow()
				return
			}
			if err := s.store.TouchEndpointProcess(ctx, ep.ID, process, time.Now()); err != nil {
				s.log.Warn("cannot record an endpoint process", "endpoint", ep.ID, "process", process, "err", err)
			}
		}
	}
}

// processName checks the name an endpoint process gave itself ("default"
// for a process older than replicas, which gives none) and answers the
// request itself when the name is not acceptable.
func processName(w http.ResponseWriter, name string) (string, bool) {
	if name == "" {
		return "default", true
	}
	if !endpointproto.ValidProcess(name) {
		writeJSON(w, http.StatusBadRequest, endpointproto.ErrorResponse{Code: "ValidationException",
			Message: "the process name must be 1 to 64 letters, digits, - or _"})
		return "", false
	}
	return name, true
}

// handleEndpointAuthorize decides a tunnel a listen-mode endpoint was
// asked for.
func (s *Server) handleEndpointAuthorize(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.endpointCaller(w, r, false)
	if !ok {
		return
	}
	var req endpointproto.AuthorizeRequest
	if !readJSON(w, r, &req) {
		return
	}
	process, ok := processName(w, req.Process)
	if !ok {
		return
	}
	resp := s.api.AuthorizeTunnel(r.Context(), ep, req, s.reserveTunnel(ep, process))
	writeJSON(w, http.StatusOK, resp)
}

// handleEndpointClosed audits a tunnel's end.
func (s *Server) handleEndpointClosed(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.endpointCaller(w, r, true)
	if !ok {
		return
	}
	var cl endpointproto.Closed
	if !readJSON(w, r, &cl) {
		return
	}
	// The tunnel was counted when it was authorized, by whichever
	// replica did it.
	var t *endpointproto.Tunnel
	if lt, err := s.store.CloseTunnel(r.Context(), cl.TunnelID); err == nil && lt.EndpointID == ep.ID {
		var opened endpointproto.Tunnel
		if json.Unmarshal(lt.Detail, &opened) == nil {
			t = &opened
		}
	} else if err != nil && !postern.IsKind(err, postern.KindNotFound) {
		s.log.Warn("cannot give back a closed tunnel's place", "endpoint", ep.ID, "tunnel", cl.TunnelID, "err", err)
	}
	if err := s.api.RecordTunnelClosed(context.WithoutCancel(r.Context()), ep, t, cl); err != nil {
		s.log.Error("recording a tunnel close failed", "endpoint", ep.ID, "err", err)
		writeJSON(w, http.StatusInternalServerError, endpointproto.ErrorResponse{Code: "ServiceException", Message: "internal error"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleOpenTunnel serves OpenTunnel on the server itself, for endpoints
// in relay mode: it authorizes the tunnel, asks the endpoint over its
// control connection to dial the target and the server back, and splices
// the client's WebSocket to the endpoint's.
func (s *Server) handleOpenTunnel(w http.ResponseWriter, r *http.Request) {
	refuse := func(te *endpointproto.TunnelError) {
		tunnel.WriteHandshakeError(w, te.Status, te.ErrorCode, te.Message, te.RequestID)
	}
	id := r.URL.Query().Get(endpointproto.ParamEndpointID)
	ep, err := s.store.GetEndpoint(r.Context(), id)
	if err != nil || !ep.Live() {
		refuse(&endpointproto.TunnelError{Status: http.StatusBadRequest, ErrorCode: "InvalidInstanceConnectEndpointId.NotFound",
			Message: "The Instance Connect Endpoint in " + endpointproto.ParamEndpointID + " does not exist or is being deleted"})
		return
	}
	// One of the endpoint's processes connected here carries the tunnel.
	leg, t, te := s.relayTunnel(r.Context(), ep, s.relayCarrier(r.Context(), ep.ID, s.endpoints.pick(ep.ID)), func(process string, reserve api.TunnelReserver) endpointproto.AuthorizeResponse {
		return s.api.AuthorizeTunnel(r.Context(), ep, endpointproto.AuthorizeRequest{
			Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, SourceIP: sourceAddr(r), UserAgent: r.UserAgent(), Process: process,
		}, reserve)
	})
	if te != nil {
		refuse(te)
		return
	}
	defer close(leg.done)
	client, err := tunnel.Accept(w, r, t.ID)
	if err != nil {
		leg.conn.Close(websocket.StatusGoingAway, "the client's handshake failed")
		return
	}
	splice(s.baseCtx, client, tunnel.NewWebSocket(leg.conn, 1<<20))
}

// relayCarrier is the endpoint process that carries a relayed tunnel: one
// whose control connection is here (local), or one another replica holds
// (replica), or none (process empty).
type relayCarrier struct {
	process string
	local   *endpointSession
	replica string
}

// relayCarrier returns local as the carrier when it is set; else, with
// replicas, a relay-mode process of the endpoint that another replica
// holds.
func (s *Server) relayCarrier(ctx context.Context, endpointID string, local *endpointSession) relayCarrier {
	if local != nil {
		return relayCarrier{process: local.process, local: local}
	}
	if s.cluster == nil {
		return relayCarrier{}
	}
	process, replica, ok, err := s.cluster.RelayProcess(ctx, endpointID)
	if err != nil {
		s.log.Warn("cannot look up the endpoint's processes on other replicas", "endpoint", endpointID, "err", err)
	}
	if !ok {
		return relayCarrier{}
	}
	return relayCarrier{process: process, replica: replica}
}

// deliverRelay sends the carrier's process the dial of t: over its control
// connection here, or through the replica that holds it, with this
// replica's URL to dial back to. It reports false when it cannot.
func (s *Server) deliverRelay(ctx context.Context, endpointID string, c relayCarrier, t *endpointproto.Tunnel) bool {
	switch {
	case c.local != nil:
		return c.local.deliver(endpointproto.Control{Type: endpointproto.ControlDial, Dial: t})
	case c.replica != "":
		routed := *t
		routed.DialBack = s.advertiseURL()
		if err := s.cluster.RelayDial(ctx, c.replica, endpointID, c.process, routed); err != nil {
			s.log.Warn("cannot route a relayed tunnel to the replica holding its endpoint process", "endpoint", endpointID, "err", err)
			return false
		}
		return true
	}
	return false
}

// onRelayDial delivers a relayed tunnel another replica routed here to the
// endpoint process whose control connection this replica holds.
func (s *Server) onRelayDial(endpointID, process string, t endpointproto.Tunnel) {
	h := s.endpoints
	h.mu.Lock()
	sess := h.sessions[endpointID][process]
	h.mu.Unlock()
	if sess == nil || !sess.deliver(endpointproto.Control{Type: endpointproto.ControlDial, Dial: &t}) {
		s.log.Warn("a routed relayed tunnel's endpoint process is not connected here", "endpoint", endpointID, "process", process, "tunnel", t.ID)
	}
}

// relayTunnel opens a relayed tunnel through ep: it decides the tunnel
// with authorize (given the process that will carry it, and the
// reservation of its place), has the carrier (a process of ep here or on
// another replica) dial the target and this server back, and returns
// the endpoint's leg and the tunnel; the caller closes leg.done when the
// tunnel is over. A refusal is what the client is answered, with the
// request id of the OpenTunnel audit record.
func (s *Server) relayTunnel(ctx context.Context, ep *postern.Endpoint, carrier relayCarrier,
	authorize func(process string, reserve api.TunnelReserver) endpointproto.AuthorizeResponse,
) (relayDialBack, *endpointproto.Tunnel, *endpointproto.TunnelError) {
	h := s.endpoints
	process := carrier.process
	if process == "" {
		process = "none"
	}
	resp := authorize(process, s.reserveTunnel(ep, process))
	if !resp.Allowed {
		return relayDialBack{}, nil, resp.Error
	}
	t := resp.Tunnel
	back := make(chan relayDialBack, 1)
	h.mu.Lock()
	h.relays[t.ID] = relayWaiter{endpointID: ep.ID, back: back}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.relays, t.ID)
		h.mu.Unlock()
	}()
	if !s.deliverRelay(ctx, ep.ID, carrier, t) {
		s.forgetTunnel(t.ID)
		return relayDialBack{}, nil, &endpointproto.TunnelError{Status: http.StatusServiceUnavailable, ErrorCode: "ServiceUnavailableException",
			Message: "Instance Connect Endpoint " + ep.ID + " is not connected to the server; is its process running?", RequestID: t.ID}
	}
	timer := time.NewTimer(relayWait)
	defer timer.Stop()
	var leg relayDialBack
	select {
	case leg = <-back:
	case <-timer.C:
		s.forgetTunnel(t.ID)
		return relayDialBack{}, nil, &endpointproto.TunnelError{Status: http.StatusGatewayTimeout, ErrorCode: "ServiceUnavailableException",
			Message: "Instance Connect Endpoint " + ep.ID + " did not answer in time", RequestID: t.ID}
	case <-ctx.Done():
		s.forgetTunnel(t.ID)
		return relayDialBack{}, nil, &endpointproto.TunnelError{Status: http.StatusServiceUnavailable, ErrorCode: "ServiceUnavailableException",
			Message: "The client went away while the tunnel was set up", RequestID: t.ID}
	}
	if leg.err != nil {
		leg.err.RequestID = t.ID
		return relayDialBack{}, nil, leg.err
	}
	return leg, t, nil
}

// handleEndpointRelay takes an endpoint's dial-back for a relayed tunnel.
func (s *Server) handleEndpointRelay(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.endpointCaller(w, r, true)
	if !ok {
		return
	}
	id := r.URL.Query().Get("tunnel")
	h := s.endpoints
	h.mu.Lock()
	waiter, waiting := h.relays[id]
	if waiting && waiter.endpointID == ep.ID {
		delete(h.relays, id)
	}
	h.mu.Unlock()
	back := waiter.back
	if !waiting || waiter.endpointID != ep.ID {
		writeJSON(w, http.StatusNotFound, endpointproto.ErrorResponse{Code: "NotFound", Message: "no relayed tunnel waits under this id"})
		return
	}
	if raw := r.Header.Get(endpointproto.TunnelErrorHeader); raw != "" {
		var te endpointproto.TunnelError
		if err := json.Unmarshal([]byte(raw), &te); err != nil || te.Status < 400 || te.Status > 599 || te.ErrorCode == "" {
			te = endpointproto.TunnelError{Status: http.StatusBadGateway, ErrorCode: "ServiceException", Message: "the endpoint could not open the tunnel"}
		}
		back <- relayDialBack{err: &te}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		back <- relayDialBack{err: &endpointproto.TunnelError{Status: http.StatusBadGateway, ErrorCode: "ServiceException", Message: "the endpoint's relay connection failed"}}
		return
	}
	done := make(chan struct{})
	back <- relayDialBack{conn: c, done: done}
	<-done
}

// splice carries messages both ways between a relayed tunnel's client and
// its endpoint until either closes; a close frame is passed on with its
// code and reason, so the client learns why the endpoint ended the tunnel.
func splice(ctx context.Context, client, endpoint *tunnel.WebSocket) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { forward(ctx, endpoint, client); done <- struct{}{} }()
	go func() { forward(ctx, client, endpoint); done <- struct{}{} }()
	go func() {
		// The endpoint pings its side; the server pings the client, so
		// that an idle relayed tunnel survives middleboxes too.
		t := time.NewTicker(tunnel.DefaultPingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(ctx, tunnel.DefaultPingInterval)
				err := client.Ping(pctx)
				pcancel()
				if err != nil && ctx.Err() == nil {
					endpoint.Close(tunnel.StatusGoingAway, "the client stopped answering pings")
					client.CloseNow()
					return
				}
			}
		}
	}()
	<-done
	// Give the other direction the close handshake's time, then cut.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		client.CloseNow()
		endpoint.CloseNow()
		<-done
	}
}

// forward copies messages from src to dst; at src's end it closes dst the
// way src ended.
func forward(ctx context.Context, dst, src *tunnel.WebSocket) {
	for {
		typ, data, err := src.Read(ctx)
		if err != nil {
			var ce *tunnel.CloseError
			switch {
			case errors.As(err, &ce):
				dst.Close(ce.Code, ce.Reason)
			case errors.Is(err, tunnel.ErrMessageTooBig):
				src.Close(tunnel.StatusMessageTooBig, "frame larger than 65000 bytes")
				dst.Close(tunnel.StatusMessageTooBig, "the client sent a frame larger than 65000 bytes")
			default:
				dst.Close(tunnel.StatusGoingAway, "the other side of the relay was lost")
			}
			return
		}
		if err := dst.Write(ctx, typ, data); err != nil {
			src.Close(tunnel.StatusGoingAway, "the other side of the relay was lost")
			return
		}
	}
}
