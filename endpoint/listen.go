package endpoint

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/tunnel"
)

// httpServer serves OpenTunnel, and nothing else, over TLS.
func (e *Endpoint) httpServer(tlsCfg *tls.Config) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc(endpointproto.OpenTunnelPath, e.openTunnel)
	return &http.Server{
		Handler:           mux,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		// WebSockets need HTTP/1.1; an empty map keeps HTTP/2 off.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

// openTunnel serves one client's OpenTunnel handshake: take a slot, have
// the server authorize the signed request, dial the target, then pipe.
func (e *Endpoint) openTunnel(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket") {
		tunnel.WriteHandshakeError(w, http.StatusBadRequest, "InvalidRequest",
			"OpenTunnel is a WebSocket handshake: GET with Connection: Upgrade and Upgrade: websocket.", uuid.NewString())
		return
	}
	s, refusal := e.tunnels.reserve()
	if refusal != nil {
		e.log.Info("tunnel refused", "source", r.RemoteAddr, "status", refusal.Status, "code", refusal.ErrorCode)
		refuse(w, refusal, uuid.NewString())
		return
	}
	handedOff := false
	defer func() {
		if !handedOff {
			s.release()
		}
	}()

	var dec endpointproto.AuthorizeResponse
	h, err := e.srv.call(s.ctx, endpointproto.AuthorizePath, endpointproto.AuthorizeRequest{
		Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, SourceIP: sourceIP(r.RemoteAddr), UserAgent: r.UserAgent(),
		Process: e.process,
	}, &dec)
	requestID := ""
	if h != nil {
		requestID = h.Get(tunnel.RequestIDHeader)
	}
	if requestID == "" {
		requestID = uuid.NewString()
	}
	switch {
	case s.refused() != nil:
		refuse(w, s.refused(), requestID)
		return
	case err != nil:
		e.log.Error("cannot authorize a tunnel", "source", r.RemoteAddr, "err", err)
		refuse(w, &endpointproto.TunnelError{Status: http.StatusServiceUnavailable, ErrorCode: "ServiceUnavailable",
			Message: "The Instance Connect Endpoint cannot reach its server to authorize the tunnel; try again later."}, requestID)
		return
	case !dec.Allowed || dec.Tunnel == nil:
		te := dec.Error
		if te == nil || te.Status < 400 || te.Status > 599 {
			te = &endpointproto.TunnelError{Status: http.StatusForbidden, ErrorCode: "AccessDeniedException", Message: "The tunnel was not authorized."}
		}
		if te.RequestID != "" {
			requestID = te.RequestID
		}
		e.log.Info("tunnel denied", "source", r.RemoteAddr, "status", te.Status, "code", te.ErrorCode, "message", te.Message)
		refuse(w, te, requestID)
		return
	}
	t := dec.Tunnel
	if t.ID != "" {
		requestID = t.ID
	}
	tcp, te := e.connect(s, t)
	if te != nil {
		refuse(w, te, requestID)
		e.end(s, endpointproto.Closed{TunnelID: t.ID, Cause: causeSetupFailed, Reason: te.Message})
		return
	}
	ws, err := tunnel.Accept(w, r, requestID)
	if err != nil {
		tcp.Close()
		e.log.Warn("tunnel handshake failed", "tunnel", t.ID, "err", err)
		e.end(s, endpointproto.Closed{TunnelID: t.ID, Cause: causeSetupFailed, Reason: "WebSocket handshake failed"})
		return
	}
	// The connection is the tunnel's now: carry it on a goroutine of its
	// own and let this one, with the request and the stack the TLS
	// handshake grew, go. An idle tunnel then holds just the two stacks of
	// its copies.
	handedOff = true
	go e.pipe(s, t, ws, tcp)
}

func refuse(w http.ResponseWriter, te *endpointproto.TunnelError, requestID string) {
	tunnel.WriteHandshakeError(w, te.Status, te.ErrorCode, te.Message, requestID)
}

// headerHas reports whether header name lists token (case-insensitive).
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// sourceIP is the client's address without its port.
func sourceIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
