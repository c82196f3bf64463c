package endpoint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/postern-dev/postern/endpointproto"
)

// join tells the server who the endpoint is and takes its VPC, settings
// and, in listen mode without a certificate of its own, a certificate for
// the key it returns. Transient failures are retried until ctx ends; a
// refusal (a bad credential, a deleted endpoint) is returned at once.
func (e *Endpoint) join(ctx context.Context) (endpointproto.JoinResponse, *ecdsa.PrivateKey, error) {
	req := endpointproto.JoinRequest{Mode: e.cfg.Mode, Version: e.cfg.Version}
	var key *ecdsa.PrivateKey
	switch e.cfg.Mode {
	case endpointproto.ModeRelay:
		// Clients reach the server; the server takes the address the
		// endpoint used unless told another.
		req.DNSName = dnsName(e.cfg.Advertise)
	case endpointproto.ModeListen:
		req.DNSName = dnsName(e.advertise())
		if e.cfg.Certificate == nil {
			var err error
			if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				return endpointproto.JoinResponse{}, nil, err
			}
			if req.CertPublicKey, err = x509.MarshalPKIXPublicKey(&key.PublicKey); err != nil {
				return endpointproto.JoinResponse{}, nil, err
			}
		}
	}
	var resp endpointproto.JoinResponse
	b := newBackoff(e.cfg.MaxBackoff)
	for {
		_, err := e.srv.call(ctx, endpointproto.JoinPath, req, &resp)
		if err == nil {
			break
		}
		if permanent(err) {
			return resp, nil, fmt.Errorf("joining the server: %w", err)
		}
		e.log.Warn("cannot join the server yet; retrying", "err", err)
		if !b.wait(ctx) {
			return resp, nil, fmt.Errorf("joining the server: %w (last error: %w)", context.Cause(ctx), err)
		}
	}
	cidrs := make([]netip.Prefix, 0, len(resp.VPCCIDRs))
	for _, c := range resp.VPCCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return resp, nil, fmt.Errorf("the server gave VPC CIDR %q: %w", c, err)
		}
		cidrs = append(cidrs, p)
	}
	e.mu.Lock()
	e.policy.VPCCIDRs = cidrs
	e.policy.OwnAddrs = e.cfg.OwnAddrs
	e.mu.Unlock()
	e.applySettings(resp.Settings)
	return resp, key, nil
}

// advertise is where clients reach a listen-mode endpoint.
func (e *Endpoint) advertise() string {
	if e.cfg.Advertise != "" {
		return e.cfg.Advertise
	}
	if e.cfg.Listener != nil {
		return e.cfg.Listener.Addr().String()
	}
	return e.cfg.Listen
}

// dnsName is addr as a DnsName: host:port, or the bare host for port 443.
func dnsName(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if port == "443" {
		return host
	}
	return addr
}

// serverTLS is the listen-mode TLS configuration: the endpoint's own
// certificate, or the one the server issued for key when joining.
func (e *Endpoint) serverTLS(join endpointproto.JoinResponse, key *ecdsa.PrivateKey) (*tls.Config, error) {
	var cert tls.Certificate
	switch {
	case e.cfg.Certificate != nil:
		cert = *e.cfg.Certificate
	case len(join.Certificate) == 0:
		return nil, errors.New("the server issued no TLS certificate for this endpoint (it has no CA of its own); give the endpoint one with --tls-cert and --tls-key")
	default:
		leaf, err := x509.ParseCertificate(join.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("the certificate the server issued: %w", err)
		}
		cert = tls.Certificate{Certificate: join.Certificate, PrivateKey: key, Leaf: leaf}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}, nil
}
