package opentunnel

import (
	"context"
	"errors"
	"fmt"
)

// Connection types: how postern ssh's --connection-type (the AWS CLI's)
// says to reach an instance.
const (
	ConnectionAuto   = "auto"
	ConnectionDirect = "direct"
	ConnectionEICE   = "eice"
)

// Addresses is what choosing the way to an instance needs to know of it.
type Addresses struct {
	ID        string
	PublicIP  string
	PrivateIP string
	VpcID     string
	SubnetID  string
}

// Route is the way to an instance: Addr directly when Endpoint is nil,
// else Addr, its private address, through Endpoint.
type Route struct {
	Addr     string
	Endpoint *Endpoint
}

// EndpointFinder returns the endpoint a tunnel to inst goes through; an
// error wrapping ErrNoEndpoint says there is none. FindEndpoint over the
// EC2 API is one, PickEndpoint over a list another.
type EndpointFinder func(ctx context.Context, inst Instance) (Endpoint, error)

// ChooseRoute picks the way to an instance for connectionType, the one
// rule that postern ssh, postern proxy and the web console's terminal
// follow:
//
//   - direct: its public address, else its private one;
//   - eice (or useEndpoint, as any --eice-options imply): its private
//     address through the endpoint find returns;
//   - auto: its public address directly; else its private address through
//     the endpoint find returns, or directly when find says its VPC has
//     none (ErrNoEndpoint): Postern's auto also serves networks where the
//     client reaches private addresses itself (a VPN, the same LAN).
func ChooseRoute(ctx context.Context, a Addresses, connectionType string, useEndpoint bool, find EndpointFinder) (Route, error) {
	switch connectionType {
	case ConnectionAuto, ConnectionDirect, ConnectionEICE:
	default:
		return Route{}, fmt.Errorf("connection type %q is not auto, direct or eice", connectionType)
	}
	useEndpoint = useEndpoint || connectionType == ConnectionEICE
	if connectionType == ConnectionDirect && useEndpoint {
		return Route{}, errors.New("endpoint options cannot be used with a direct connection")
	}
	if !useEndpoint && a.PublicIP != "" {
		return Route{Addr: a.PublicIP}, nil
	}
	if a.PrivateIP == "" {
		if useEndpoint {
			return Route{}, fmt.Errorf("instance %s has reported no private address to tunnel to", a.ID)
		}
		return Route{}, fmt.Errorf("instance %s has reported no address", a.ID)
	}
	if connectionType == ConnectionDirect {
		return Route{Addr: a.PrivateIP}, nil
	}
	ep, err := find(ctx, Instance{ID: a.ID, PrivateIP: a.PrivateIP, VpcID: a.VpcID, SubnetID: a.SubnetID})
	if err != nil {
		if !useEndpoint && errors.Is(err, ErrNoEndpoint) {
			return Route{Addr: a.PrivateIP}, nil
		}
		return Route{}, err
	}
	return Route{Addr: a.PrivateIP, Endpoint: &ep}, nil
}
