package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/opentunnel"
	"github.com/postern-dev/postern/pki"
	"github.com/postern-dev/postern/tunnel"
)

// consoleTunnels opens the web console terminal's tunnels through
// Instance Connect Endpoints, as the signed-in user (consoleterm's
// TunnelOpener). A relay-mode process of the endpoint connected to this
// replica carries the tunnel in-process, decided by api.AuthorizeTunnelAs;
// otherwise the server opens the tunnel where any client would, at the
// endpoint's DnsName, with a console ticket in place of a presignature,
// which the endpoint hands to a server to decide as it would a presigned
// request. Either way the decision, the limit and the audit records are
// those of an OpenTunnel call of the user.
type consoleTunnels struct {
	s   *Server
	tls *tls.Config // trusts the system's roots and the server's own CA
}

// newConsoleTunnels prepares the TLS trust for listen-mode endpoints:
// their certificates come from the server's CA, or, with an operator's
// certificate on the server, from wherever the operator's come from.
func (s *Server) newConsoleTunnels() *consoleTunnels {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(filepath.Join(s.cfg.DataDir, pki.CAFile)); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	return &consoleTunnels{s: s, tls: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
}

// OpenTunnelAs opens a tunnel through ep to target:port for p, from the
// browser env describes. A refusal is an *endpointproto.TunnelError with
// the endpoint's or server's status, code, message and request id.
func (ct *consoleTunnels) OpenTunnelAs(ctx context.Context, p *authority.Principal, env authority.Env, ep *postern.Endpoint, target string, port int) (tunnel.MessageConn, string, error) {
	s := ct.s
	req := api.ConsoleTunnel{Principal: p, Env: env, EndpointID: ep.ID, Target: target, RemotePort: port}
	if sess := s.endpoints.pickRelay(ep.ID); sess != nil {
		leg, t, te := s.relayTunnel(ctx, ep, relayCarrier{process: sess.process, local: sess}, func(_ string, reserve api.TunnelReserver) endpointproto.AuthorizeResponse {
			return s.api.AuthorizeTunnelAs(ctx, ep, req, reserve)
		})
		if te != nil {
			return nil, "", te
		}
		return &relayLeg{WebSocket: tunnel.NewWebSocket(leg.conn, 1<<20), done: leg.done}, t.ID, nil
	}
	u, err := s.api.ConsoleTunnelURL(req, ep.DNSName)
	if err != nil {
		return nil, "", err
	}
	ws, id, err := opentunnel.DialAs(ctx, u, ct.tls, api.ConsoleUserAgent)
	var he *opentunnel.HandshakeError
	if errors.As(err, &he) {
		return nil, "", &endpointproto.TunnelError{Status: he.StatusCode, ErrorCode: he.ErrorCode, Message: he.Message, RequestID: he.RequestID}
	}
	if err != nil {
		return nil, "", err
	}
	return ws, id, nil
}

// relayLeg is the endpoint's leg of a relayed console tunnel; closing it
// ends the endpoint's dial-back request too.
type relayLeg struct {
	*tunnel.WebSocket
	once sync.Once
	done chan struct{}
}

func (l *relayLeg) release() { l.once.Do(func() { close(l.done) }) }

func (l *relayLeg) Close(code tunnel.StatusCode, reason string) error {
	defer l.release()
	return l.WebSocket.Close(code, reason)
}

func (l *relayLeg) CloseNow() error {
	defer l.release()
	return l.WebSocket.CloseNow()
}
