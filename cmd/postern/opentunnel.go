package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"golang.org/x/term"

	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/opentunnel"
	"github.com/postern-dev/postern/tunnel"
)

// This file holds open-tunnel and what ssh and proxy share with it: the
// route to an instance through an Instance Connect Endpoint.

func runOpenTunnel(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("open-tunnel",
		"open-tunnel (--instance-id ID | --private-ip-address IP --instance-connect-endpoint-id EICE) [flags]",
		"# as ssh's ProxyCommand:\n"+
			"ssh -o ProxyCommand='postern open-tunnel --instance-id i-0123456789abcdef0' alice@i-0123456789abcdef0\n"+
			"# listen locally, one tunnel per connection (here RDP to a Windows host):\n"+
			"postern open-tunnel --instance-id i-0123456789abcdef0 --remote-port 3389 --local-port 13389\n"+
			"# by address, through a given endpoint:\n"+
			"postern open-tunnel --private-ip-address 10.0.1.5 --instance-connect-endpoint-id eice-0123456789abcdef0 --local-port 2222")
	instanceID := fs.String("instance-id", "", "the instance to tunnel to (its private address, through an endpoint of its VPC)")
	privateIP := fs.String("private-ip-address", "", "the private address to tunnel to (needs --instance-connect-endpoint-id)")
	endpointID := fs.String("instance-connect-endpoint-id", "", "the endpoint to go through (default: one of the instance's VPC, preferably in its subnet)")
	dnsName := fs.String("instance-connect-endpoint-dns-name", "", "the endpoint's DNS name, which saves looking it up (needs --instance-connect-endpoint-id)")
	remotePort := fs.Int("remote-port", 22, "the port to reach on the instance")
	localPort := fs.Int("local-port", 0, "listen on 127.0.0.1:PORT and open a tunnel per connection (0 picks a free port); without it, relay standard input and output")
	maxConns := fs.Int("max-websocket-connections", opentunnel.DefaultMaxConnections, "with --local-port: the most tunnels open at once")
	maxDuration := fs.Int("max-tunnel-duration", 0, "seconds (1-3600) after which the endpoint closes each tunnel (default: the endpoint's limit)")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *instanceID == "" && *privateIP == "":
		return usagef("open-tunnel: give --instance-id or --private-ip-address")
	case *dnsName != "" && *endpointID == "":
		return usagef("open-tunnel: --instance-connect-endpoint-dns-name needs --instance-connect-endpoint-id")
	case *privateIP != "" && *endpointID == "":
		return usagef("open-tunnel: --private-ip-address needs --instance-connect-endpoint-id")
	case set["max-tunnel-duration"] && (*maxDuration < 1 || *maxDuration > 3600):
		return usagef("open-tunnel: --max-tunnel-duration must be 1 to 3600 seconds, got %d", *maxDuration)
	case *remotePort < 1 || *remotePort > 65535:
		return usagef("open-tunnel: --remote-port must be 1 to 65535, got %d", *remotePort)
	case *localPort < 0 || *localPort > 65535:
		return usagef("open-tunnel: --local-port must be 0 to 65535, got %d", *localPort)
	case *maxConns < 1:
		return usagef("open-tunnel: --max-websocket-connections must be at least 1, got %d", *maxConns)
	case !set["local-port"] && isTerminal(m.Stdin):
		return usagef("open-tunnel: standard input is a terminal; run it as ssh's ProxyCommand, or give --local-port to listen for connections")
	}

	cfg, err := connect(ctx)
	if err != nil {
		return client.Clean(err)
	}
	r := tunnelRoute{
		Instance:          opentunnel.Instance{ID: *instanceID, PrivateIP: *privateIP},
		Endpoint:          opentunnel.Endpoint{ID: *endpointID, DNSName: *dnsName},
		MaxTunnelDuration: *maxDuration,
	}
	if err := r.resolve(ctx, cfg); err != nil {
		return client.Clean(err)
	}
	open := r.opener(cfg, *remotePort)

	if !set["local-port"] {
		ws, err := open(ctx)
		if err != nil {
			return client.Clean(err)
		}
		return client.Clean(opentunnel.Relay(ctx, ws, m.Stdin, m.Stdout))
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*localPort)))
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "Listening for connections on 127.0.0.1:%d; each gets a tunnel to %s port %d through %s.\n",
		ln.Addr().(*net.TCPAddr).Port, r.Instance.PrivateIP, *remotePort, r.Endpoint.ID)
	l := &opentunnel.Listener{Open: open, MaxConnections: *maxConns, Log: m.Stderr}
	return l.Serve(ctx, ln)
}

// isTerminal reports whether r is an interactive terminal.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// tunnelRoute is the way to an instance through an Instance Connect
// Endpoint.
type tunnelRoute struct {
	Instance          opentunnel.Instance
	Endpoint          opentunnel.Endpoint
	MaxTunnelDuration int // seconds; 0 leaves it to the endpoint
}

// resolve fills in what the route lacks, as the AWS CLI does: the
// instance's private address, VPC and subnet from DescribeInstances, and
// the endpoint (by id, or one of the VPC's) from
// DescribeInstanceConnectEndpoints, unless its DNS name was given.
func (r *tunnelRoute) resolve(ctx context.Context, cfg aws.Config) error {
	api := client.EC2(cfg)
	if r.Instance.PrivateIP == "" {
		inst, err := opentunnel.DescribeInstance(ctx, api, r.Instance.ID)
		if err != nil {
			return err
		}
		r.Instance = inst
	}
	if r.Endpoint.DNSName != "" {
		return nil
	}
	ep, err := opentunnel.FindEndpoint(ctx, api, r.Instance, r.Endpoint.ID)
	if err != nil {
		return err
	}
	r.Endpoint = ep
	return nil
}

// opener returns a function that opens one tunnel to port along the
// route, with a freshly signed URL each time.
func (r *tunnelRoute) opener(cfg aws.Config, port int) func(context.Context) (tunnel.MessageConn, error) {
	tlsConfig := client.TLSConfig(cfg)
	p := opentunnel.Params{EndpointID: r.Endpoint.ID, PrivateIP: r.Instance.PrivateIP, RemotePort: port, MaxTunnelDuration: r.MaxTunnelDuration}
	return func(ctx context.Context) (tunnel.MessageConn, error) {
		u, err := opentunnel.Presign(ctx, cfg.Credentials, cfg.Region, r.Endpoint.DNSName, p)
		if err != nil {
			return nil, err
		}
		ws, err := opentunnel.Dial(ctx, u, tlsConfig)
		if err != nil {
			return nil, err
		}
		return ws, nil
	}
}

// proxyCommand is the ssh ProxyCommand that opens a tunnel to port along
// the route: self's open-tunnel with everything resolved, so that it makes
// no EC2 calls. Arguments are quoted for the shell ssh runs it with, and
// "%" is doubled because ssh expands %-tokens in it.
func (r *tunnelRoute) proxyCommand(self string, port int) string {
	args := []string{self, "open-tunnel",
		"--instance-id", r.Instance.ID,
		"--private-ip-address", r.Instance.PrivateIP,
		"--remote-port", strconv.Itoa(port),
		"--instance-connect-endpoint-id", r.Endpoint.ID,
		"--instance-connect-endpoint-dns-name", r.Endpoint.DNSName,
	}
	if r.Instance.ID == "" {
		args = append(args[:2], args[4:]...)
	}
	if r.MaxTunnelDuration > 0 {
		args = append(args, "--max-tunnel-duration", strconv.Itoa(r.MaxTunnelDuration))
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(shellQuote(a), "%", "%%")
	}
	return strings.Join(args, " ")
}

// eiceOptions is --eice-options, as the AWS CLI's ssh takes it: shorthand
// "endpointId=eice-…,dnsName=…,maxTunnelDuration=600" or the same as JSON.
type eiceOptions struct {
	EndpointID        string
	DNSName           string
	MaxTunnelDuration int // seconds; 0 leaves it to the endpoint
}

func (o eiceOptions) isSet() bool { return o != eiceOptions{} }

func parseEICEOptions(s string) (eiceOptions, error) {
	var o eiceOptions
	s = strings.TrimSpace(s)
	if s == "" {
		return o, nil
	}
	durationSet := false
	if strings.HasPrefix(s, "{") {
		var v struct {
			EndpointID        string `json:"endpointId"`
			DNSName           string `json:"dnsName"`
			MaxTunnelDuration *int   `json:"maxTunnelDuration"`
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return o, usagef("--eice-options: %v", err)
		}
		o.EndpointID, o.DNSName = v.EndpointID, v.DNSName
		if v.MaxTunnelDuration != nil {
			o.MaxTunnelDuration, durationSet = *v.MaxTunnelDuration, true
		}
	} else {
		for _, kv := range strings.Split(s, ",") {
			k, v, err := keyValue("eice-options", strings.TrimSpace(kv))
			if err != nil {
				return o, err
			}
			switch k {
			case "endpointId":
				o.EndpointID = v
			case "dnsName":
				o.DNSName = v
			case "maxTunnelDuration":
				n, err := strconv.Atoi(v)
				if err != nil {
					return o, usagef("--eice-options: maxTunnelDuration %q is not a number of seconds", v)
				}
				o.MaxTunnelDuration, durationSet = n, true
			default:
				return o, usagef("--eice-options: unknown option %q (want endpointId, dnsName, maxTunnelDuration)", k)
			}
		}
	}
	switch {
	case o.DNSName != "" && o.EndpointID == "":
		return o, usagef("--eice-options: dnsName needs endpointId")
	case o.EndpointID != "" && !strings.HasPrefix(o.EndpointID, "eice-"):
		return o, usagef("--eice-options: endpointId %q is not an endpoint id (eice-…)", o.EndpointID)
	case durationSet && (o.MaxTunnelDuration < 1 || o.MaxTunnelDuration > 3600):
		return o, usagef("--eice-options: maxTunnelDuration must be 1 to 3600 seconds, got %d", o.MaxTunnelDuration)
	}
	return o, nil
}

// sshRoute is how ssh reaches an instance: at addr directly, or at the
// private address addr through tunnel.
type sshRoute struct {
	addr   string
	tunnel *tunnelRoute
}

// checkConnectionType refuses a --connection-type that is not one, or
// one that contradicts --eice-options, before anything is asked of the
// server.
func checkConnectionType(connectionType string, eice eiceOptions) error {
	switch connectionType {
	case opentunnel.ConnectionAuto, opentunnel.ConnectionDirect, opentunnel.ConnectionEICE:
	default:
		return usagef("--connection-type must be auto, direct or eice, got %q", connectionType)
	}
	if connectionType == opentunnel.ConnectionDirect && eice.isSet() {
		return usagef("--eice-options cannot be used with --connection-type direct")
	}
	return nil
}

// chooseRoute picks the way to an instance for --connection-type, by the
// rule the web console's terminal follows too (opentunnel.ChooseRoute):
//
//   - direct: its public address, else its private one;
//   - eice (or any --eice-options): its private address through an
//     Instance Connect Endpoint;
//   - auto: its public address directly; else its private address through
//     an endpoint of its VPC, or directly when its VPC has none.
func chooseRoute(ctx context.Context, cfg aws.Config, info *connectInfo, connectionType string, eice eiceOptions) (sshRoute, error) {
	if err := checkConnectionType(connectionType, eice); err != nil {
		return sshRoute{}, err
	}
	addrs := opentunnel.Addresses{ID: info.InstanceId, PublicIP: info.PublicIpAddress, PrivateIP: info.PrivateIpAddress,
		VpcID: info.VpcId, SubnetID: info.SubnetId}
	route, err := opentunnel.ChooseRoute(ctx, addrs, connectionType, eice.isSet(), func(ctx context.Context, inst opentunnel.Instance) (opentunnel.Endpoint, error) {
		r := &tunnelRoute{Instance: inst, Endpoint: opentunnel.Endpoint{ID: eice.EndpointID, DNSName: eice.DNSName}}
		if err := r.resolve(ctx, cfg); err != nil {
			return opentunnel.Endpoint{}, err
		}
		return r.Endpoint, nil
	})
	if err != nil {
		return sshRoute{}, err
	}
	if route.Endpoint == nil {
		return sshRoute{addr: route.Addr}, nil
	}
	return sshRoute{addr: route.Addr, tunnel: &tunnelRoute{
		Instance:          opentunnel.Instance{ID: info.InstanceId, PrivateIP: info.PrivateIpAddress, VpcID: info.VpcId, SubnetID: info.SubnetId},
		Endpoint:          *route.Endpoint,
		MaxTunnelDuration: eice.MaxTunnelDuration,
	}}, nil
}
