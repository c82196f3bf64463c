package postern

import "time"

// Instance Connect Endpoint states, as EC2 spells them.
const (
	EndpointCreateInProgress = "create-in-progress"
	EndpointCreateComplete   = "create-complete"
	EndpointDeleteInProgress = "delete-in-progress"
	EndpointDeleteComplete   = "delete-complete"
)

// Endpoint defaults, as DESIGN.md's table has them.
const (
	DefaultEndpointMaxConnections    = 20
	DefaultEndpointMaxTunnelDuration = 3600 * time.Second
)

// DefaultEndpointPorts are the ports an endpoint tunnels to unless
// configured otherwise: SSH and RDP.
func DefaultEndpointPorts() []int { return []int{22, 3389} }

// EndpointSettings are what an administrator tunes per endpoint; the
// endpoint process enforces them.
type EndpointSettings struct {
	AllowedPorts      []int         // sorted, no duplicates
	MaxConnections    int           // concurrent tunnels
	MaxTunnelDuration time.Duration // whole seconds
}

// Endpoint is an Instance Connect Endpoint: an identity-aware TCP proxy
// placed in one subnet. The process that runs it joins with a credential
// shown once at creation and kept only as a hash.
type Endpoint struct {
	ID               string // eice- followed by 17 hex digits
	SubnetID         string
	VPCID            string
	AvailabilityZone string
	State            string
	StateMessage     string
	DNSName          string // where clients reach it (host or host:port); "" until it joins
	FIPSDNSName      string
	PreserveClientIP bool     // always false: the endpoint cannot spoof sources
	SecurityGroupIDs []string // accepted and echoed; Postern enforces none
	EndpointSettings

	// ClientToken and RequestDigest make CreateInstanceConnectEndpoint
	// idempotent: a retry with the same token must carry a request with
	// the same digest.
	ClientToken   string
	RequestDigest []byte

	CredentialHash []byte // SHA-256 of the join credential
	Tags           []Tag
	CreatedAt      time.Time
	JoinedAt       time.Time // first join; zero until then
	CreatedBy      string    // ARN
}

// Live reports whether the endpoint is neither being deleted nor deleted.
func (e *Endpoint) Live() bool {
	return e.State != EndpointDeleteInProgress && e.State != EndpointDeleteComplete
}

// LiveTunnel is a tunnel an endpoint process carries, counted against the
// endpoint's connection limit across all of its processes.
type LiveTunnel struct {
	ID         string // the OpenTunnel audit record's request id
	EndpointID string
	// ProcessID names the endpoint process that carries the tunnel; a
	// process the server has not heard from lately is gone, and its
	// tunnels stop counting.
	ProcessID string
	OpenedAt  time.Time
	// Detail is what the server needs when the tunnel closes (JSON).
	Detail []byte
}
