// Package opentunnel is the client side of Instance Connect Endpoint
// tunnels, as `aws ec2-instance-connect open-tunnel` implements it: it
// presigns the OpenTunnel URL with SigV4, opens the WebSocket, and relays a
// byte stream (standard input and output, or local TCP connections) over
// binary frames.
//
// The relay works on tunnel.MessageConn, the interface the endpoint's side
// uses too, so it is tested over an in-memory pair as well as over a real
// WebSocket; Dial adapts a coder/websocket connection, and Conn turns a
// tunnel into a net.Conn for clients inside the process.
//
// It also holds the one rule by which postern ssh, postern proxy and the
// web console's terminal choose between connecting directly and going
// through an endpoint, and which endpoint (ChooseRoute, PickEndpoint).
package opentunnel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/postern-dev/postern/endpointproto"
)

// SigningName is the SigV4 service of OpenTunnel URLs.
const SigningName = "ec2-instance-connect"

// URLLifetime is how long a presigned URL stays valid (X-Amz-Expires), as
// the AWS CLI signs it. Each URL opens one tunnel.
const URLLifetime = 60 * time.Second

// emptyPayloadHash is the SHA-256 of the empty body a WebSocket handshake
// carries: presigned OpenTunnel URLs sign it.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Params say where a tunnel goes.
type Params struct {
	EndpointID string // eice-…
	PrivateIP  string // the target's private address
	RemotePort int    // the target's port
	// MaxTunnelDuration, in seconds (1–3600), bounds the tunnel. Zero
	// leaves it out, and the endpoint's own limit applies.
	MaxTunnelDuration int
}

// Validate checks the parameters the way the AWS CLI does before it signs.
func (p Params) Validate() error {
	switch {
	case p.EndpointID == "":
		return errors.New("no Instance Connect Endpoint id")
	case p.PrivateIP == "":
		return errors.New("no private IP address to tunnel to")
	case p.RemotePort < 1 || p.RemotePort > 65535:
		return fmt.Errorf("remote port %d is not between 1 and 65535", p.RemotePort)
	case p.MaxTunnelDuration < 0 || p.MaxTunnelDuration > 3600:
		return fmt.Errorf("maximum tunnel duration %d is not between 1 and 3600 seconds", p.MaxTunnelDuration)
	}
	return nil
}

// Query returns the OpenTunnel parameters as the request's query.
func (p Params) Query() url.Values {
	q := url.Values{}
	q.Set(endpointproto.ParamEndpointID, p.EndpointID)
	q.Set(endpointproto.ParamRemotePort, strconv.Itoa(p.RemotePort))
	q.Set(endpointproto.ParamPrivateIPAddress, p.PrivateIP)
	if p.MaxTunnelDuration > 0 {
		q.Set(endpointproto.ParamMaxTunnelDuration, strconv.Itoa(p.MaxTunnelDuration))
	}
	return q
}

// Presign returns the URL that opens one tunnel through the endpoint at
// dnsName (a host name, with :port when it is not 443):
//
//	wss://DNSNAME/openTunnel?instanceConnectEndpointId=…&maxTunnelDuration=…&privateIpAddress=…&remotePort=…&X-Amz-…
//
// signed with SigV4 in the query for service ec2-instance-connect in
// region, GET, over the host header and the empty payload, valid for
// URLLifetime: what the AWS CLI's open-tunnel signs with botocore. The URL
// is a credential until it expires or is used; never log it.
func Presign(ctx context.Context, creds aws.CredentialsProvider, region, dnsName string, p Params) (string, error) {
	return presign(ctx, creds, region, dnsName, p, time.Now())
}

func presign(ctx context.Context, creds aws.CredentialsProvider, region, dnsName string, p Params, now time.Time) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	if err := checkDNSName(dnsName); err != nil {
		return "", err
	}
	if region == "" {
		return "", errors.New("no region to sign the tunnel URL for")
	}
	if creds == nil {
		return "", errors.New("no AWS credentials to sign the tunnel URL with")
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return "", fmt.Errorf("retrieve AWS credentials: %w", err)
	}
	q := p.Query()
	q.Set("X-Amz-Expires", strconv.Itoa(int(URLLifetime/time.Second)))
	u := &url.URL{Scheme: "wss", Host: dnsName, Path: endpointproto.OpenTunnelPath, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	signed, _, err := v4.NewSigner().PresignHTTP(ctx, c, req, emptyPayloadHash, SigningName, region, now)
	if err != nil {
		return "", fmt.Errorf("sign the tunnel URL: %w", err)
	}
	return signed, nil
}

// checkDNSName accepts a host name or address with an optional port, and
// nothing a URL would read as more than its host.
func checkDNSName(dnsName string) error {
	if dnsName == "" {
		return errors.New("no Instance Connect Endpoint DNS name")
	}
	u, err := url.Parse("wss://" + dnsName + "/")
	if err != nil || u.Host != dnsName || u.User != nil || strings.ContainsAny(dnsName, "/?#@ ") || u.Hostname() == "" {
		return fmt.Errorf("%q is not a DNS name (host or host:port)", dnsName)
	}
	return nil
}

// Redact returns a tunnel URL without its query, which holds the
// signature: fit for messages and logs.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "the tunnel URL"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
