// Package endpointproto is the protocol between an Instance Connect
// Endpoint process (`postern endpoint run`) and the Postern server.
//
// Every call carries the endpoint's join credential as
// "Authorization: Bearer <credential>" over the server's TLS. The endpoint
//
//   - joins (POST JoinPath) once at start: the server records where clients
//     reach it, completes its creation, and answers with its VPC's CIDRs,
//     its settings and, in listen mode, a TLS certificate for its DnsName;
//   - keeps a control WebSocket (GET ControlPath) open, on which the server
//     sends Control messages: new settings, deletion, and in relay mode the
//     tunnels to dial back for (an endpoint whose deletion completed while
//     it was away is answered 410 Gone instead, and stops);
//   - asks, for each client tunnel in listen mode, the server to authorize
//     it (POST AuthorizePath): the server verifies the SigV4 presignature,
//     evaluates ec2-instance-connect:OpenTunnel and audits the decision;
//   - reports every tunnel that ends (POST ClosedPath) for the audit trail.
//
// In relay mode the endpoint listens on nothing: clients open their tunnel
// at the server's own OpenTunnelPath, the server authorizes it, sends a
// Dial on the control connection, and the endpoint dials the target and
// then the server back (GET RelayPath?tunnel=ID), a WebSocket the server
// splices to the client's. When the endpoint cannot set the tunnel up it
// says why in the TunnelErrorHeader of that request, as JSON TunnelError,
// and the server refuses the client's handshake with it.
package endpointproto

import (
	"time"

	"github.com/postern-dev/postern"
)

// ParamProcess, on ControlPath, names the endpoint process: several
// processes may serve one endpoint, sharing its connection limit. A
// process draws a random name at start.
const ParamProcess = "process"

// ParamMode, on ControlPath, is the process's mode (ModeListen or
// ModeRelay): the server carries its own console's tunnels through a
// relay-mode process connected to it in-process.
const ParamMode = "mode"

// An endpoint process is heard from (its control connection answers a
// ping) every ProcessTouch; one not heard from for ProcessStale is gone,
// and the tunnels it carried stop counting against the endpoint's limit.
const (
	ProcessTouch = 5 * time.Second
	ProcessStale = 3 * ProcessTouch
)

// ValidProcess reports whether p is an acceptable process name.
func ValidProcess(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Paths on the server.
const (
	JoinPath      = "/postern/endpoint/join"
	ControlPath   = "/postern/endpoint/control"
	AuthorizePath = "/postern/endpoint/authorize"
	ClosedPath    = "/postern/endpoint/closed"
	RelayPath     = "/postern/endpoint/relay"
	// OpenTunnelPath is where clients open tunnels: on a listen-mode
	// endpoint, and on the server for relay-mode endpoints.
	OpenTunnelPath = "/openTunnel"
)

// TunnelErrorHeader carries a TunnelError on a relay dial-back that could
// not set the tunnel up.
const TunnelErrorHeader = "X-Postern-Tunnel-Error"

// Modes an endpoint runs in.
const (
	ModeListen = "listen"
	ModeRelay  = "relay"
)

// Query parameters of an OpenTunnel request, as the AWS CLI sends them.
const (
	ParamEndpointID        = "instanceConnectEndpointId"
	ParamRemotePort        = "remotePort"
	ParamPrivateIPAddress  = "privateIpAddress"
	ParamMaxTunnelDuration = "maxTunnelDuration"
)

// Settings are the limits the endpoint enforces.
type Settings struct {
	AllowedPorts      []int `json:"allowedPorts"`
	MaxConnections    int   `json:"maxConnections"`
	MaxTunnelDuration int   `json:"maxTunnelDurationSeconds"`
}

// SettingsOf converts the domain settings.
func SettingsOf(s postern.EndpointSettings) Settings {
	return Settings{AllowedPorts: s.AllowedPorts, MaxConnections: s.MaxConnections, MaxTunnelDuration: int(s.MaxTunnelDuration / time.Second)}
}

// JoinRequest is what an endpoint says of itself when it starts.
type JoinRequest struct {
	Mode string `json:"mode"`
	// DNSName is where clients reach a listen-mode endpoint (host:port, or
	// host for port 443). In relay mode clients reach the server: DNSName
	// is then the server's address as they know it, by default the one the
	// endpoint used.
	DNSName string `json:"dnsName,omitempty"`
	// CertPublicKey, in listen mode, is the PKIX DER public key that the
	// server's CA certifies for DNSName's host. Empty when the endpoint
	// brings its own certificate, or the server has no CA of its own.
	CertPublicKey []byte `json:"certPublicKey,omitempty"`
	Version       string `json:"version,omitempty"`
}

// JoinResponse tells the endpoint who it is and what it may do.
type JoinResponse struct {
	EndpointID string   `json:"endpointId"`
	ARN        string   `json:"arn"`
	VPCID      string   `json:"vpcId"`
	SubnetID   string   `json:"subnetId"`
	VPCCIDRs   []string `json:"vpcCidrs"`
	DNSName    string   `json:"dnsName"`
	Region     string   `json:"region"`
	Settings   Settings `json:"settings"`
	// Certificate, when the request asked for one, is the DER chain (leaf
	// first) for DNSName's host.
	Certificate [][]byte `json:"certificate,omitempty"`
}

// Control message types, server to endpoint.
const (
	ControlSettings = "settings" // Settings changed
	ControlDelete   = "delete"   // the endpoint was deleted: close every tunnel, accept none
	ControlDial     = "dial"     // relay mode: dial Dial's target, then the server back
)

// Control message type, endpoint to server.
const (
	// ControlDeleted says every tunnel is closed after a ControlDelete.
	ControlDeleted = "deleted"
)

// Control is one message on the control WebSocket (JSON, text frames).
type Control struct {
	Type     string    `json:"type"`
	Settings *Settings `json:"settings,omitempty"`
	Dial     *Tunnel   `json:"dial,omitempty"`
}

// AuthorizeRequest hands a client's OpenTunnel handshake to the server.
type AuthorizeRequest struct {
	Method string `json:"method"`
	// RequestURI is the request line's target, path and presigned query.
	RequestURI string `json:"requestUri"`
	// Host is the Host header the client sent (and signed).
	Host      string `json:"host"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent,omitempty"`
	// Process names the endpoint process that will carry the tunnel (see
	// ParamProcess).
	Process string `json:"process,omitempty"`
}

// Tunnel is an authorized tunnel: what to dial and for how long.
type Tunnel struct {
	ID string `json:"id"` // the audit record's request id
	// Target is the address to dial and RemotePort the port.
	Target      string `json:"target"`
	RemotePort  int    `json:"remotePort"`
	MaxDuration int    `json:"maxDurationSeconds"`
	Caller      string `json:"caller"` // the user's ARN
	SourceIP    string `json:"sourceIp"`
	// DialBack, on a relayed tunnel, is the base URL of the server replica
	// that holds the client's side, when it is not the one the process's
	// control connection goes to; empty: that one.
	DialBack string `json:"dialBack,omitempty"`
}

// AuthorizeResponse is the server's decision. When Allowed is false, Error
// says what to answer the client.
type AuthorizeResponse struct {
	Allowed bool         `json:"allowed"`
	Tunnel  *Tunnel      `json:"tunnel,omitempty"`
	Error   *TunnelError `json:"error,omitempty"`
}

// TunnelError is a refused handshake: the HTTP status and the AWS error
// code and message the client gets as {"ErrorCode","Message"}.
type TunnelError struct {
	Status    int    `json:"status"`
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
	// RequestID is the audit record's request id, when there is one.
	RequestID string `json:"requestId,omitempty"`
}

func (e *TunnelError) Error() string { return e.ErrorCode + ": " + e.Message }

// Closed reports a tunnel that ended.
type Closed struct {
	TunnelID string `json:"tunnelId"`
	// BytesIn went from the client to the target; BytesOut the other way.
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
	// DurationMillis is how long the tunnel was open.
	DurationMillis int64 `json:"durationMillis"`
	// Cause says which side ended it (client, target, limit, endpoint);
	// Code and Reason are the close frame sent or received.
	Cause  string `json:"cause"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// ErrorResponse is the body of a refused endpoint call.
type ErrorResponse struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
