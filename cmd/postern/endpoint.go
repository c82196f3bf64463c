package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/postern-dev/postern/client"
)

func endpointCommands() []subcommand {
	return []subcommand{
		{"create", "create an Instance Connect Endpoint in a subnet", apiRunner(runEndpointCreate)},
		{"list", "list Instance Connect Endpoints and their settings", apiRunner(runEndpointList)},
		{"modify", "change an endpoint's ports, connection limit or tunnel duration", apiRunner(runEndpointModify)},
		{"delete", "delete endpoints (they refuse new tunnels and close live ones)", apiRunner(runEndpointDelete)},
		{"run", "run the endpoint process on a host inside the private network", runEndpointRun},
	}
}

// Postern's per-endpoint settings travel as extensions of the EC2 Query
// API that the SDK knows nothing of: extra request parameters, and extra
// elements in the XML answer. The two options below add the one and read
// the other around an ordinary SDK call.

// withQueryParams appends extra parameters to an EC2 Query request body
// after the SDK has serialized it (and before it is signed).
func withQueryParams(extra url.Values) func(*ec2.Options) {
	return func(o *ec2.Options) {
		if len(extra) == 0 {
			return
		}
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Serialize.Add(middleware.SerializeMiddlewareFunc("PosternExtensionParams",
				func(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (middleware.SerializeOutput, middleware.Metadata, error) {
					req, ok := in.Request.(*smithyhttp.Request)
					if !ok {
						return next.HandleSerialize(ctx, in)
					}
					var body []byte
					if s := req.GetStream(); s != nil {
						b, err := io.ReadAll(s)
						if err != nil {
							return middleware.SerializeOutput{}, middleware.Metadata{}, err
						}
						body = b
					}
					body = append(body, '&')
					body = append(body, extra.Encode()...)
					req, err := req.SetStream(bytes.NewReader(body))
					if err != nil {
						return middleware.SerializeOutput{}, middleware.Metadata{}, err
					}
					in.Request = req
					return next.HandleSerialize(ctx, in)
				}), middleware.After)
		})
	}
}

// withRawBody keeps a copy of the response body in *dst.
func withRawBody(dst *[]byte) func(*ec2.Options) {
	return func(o *ec2.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Deserialize.Add(middleware.DeserializeMiddlewareFunc("PosternRawBody",
				func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleDeserialize(ctx, in)
					if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && resp.Body != nil {
						b, rerr := io.ReadAll(resp.Body)
						resp.Body.Close()
						*dst = b
						resp.Body = io.NopCloser(bytes.NewReader(b))
						if err == nil && rerr != nil {
							err = rerr
						}
					}
					return out, md, err
				}), middleware.After)
		})
	}
}

// endpointExtras are Postern's extension elements of one endpoint.
type endpointExtras struct {
	ID                string `xml:"instanceConnectEndpointId" json:"-"`
	AllowedPorts      []int  `xml:"posternAllowedPortSet>item"`
	MaxConnections    int    `xml:"posternMaxConnections"`
	MaxTunnelDuration int    `xml:"posternMaxTunnelDuration"`
}

// parseExtras reads the extension elements of every endpoint in a raw
// answer (describe, create or delete), by id.
func parseExtras(body []byte) (map[string]endpointExtras, string) {
	var v struct {
		Set        []endpointExtras `xml:"instanceConnectEndpointSet>item"`
		One        *endpointExtras  `xml:"instanceConnectEndpoint"`
		Credential string           `xml:"posternJoinCredential"`
	}
	_ = xml.Unmarshal(body, &v) // the SDK has parsed it already; extras are best effort
	out := map[string]endpointExtras{}
	for _, e := range v.Set {
		out[e.ID] = e
	}
	if v.One != nil {
		out[v.One.ID] = *v.One
	}
	return out, v.Credential
}

// endpointView is an endpoint as the JSON output shows it: the SDK's
// fields and Postern's settings.
type endpointView struct {
	ec2types.Ec2InstanceConnectEndpoint
	AllowedPorts      []int `json:",omitempty"`
	MaxConnections    int   `json:",omitempty"`
	MaxTunnelDuration int   `json:",omitempty"`
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (m *Main) printEndpoints(fs *clientFlags, es []ec2types.Ec2InstanceConnectEndpoint, extras map[string]endpointExtras, single bool) error {
	views := make([]endpointView, len(es))
	for i, e := range es {
		x := extras[aws.ToString(e.InstanceConnectEndpointId)]
		views[i] = endpointView{e, x.AllowedPorts, x.MaxConnections, x.MaxTunnelDuration}
	}
	if fs.json() {
		if single && len(views) == 1 {
			return m.printJSON(map[string]any{"InstanceConnectEndpoint": views[0]})
		}
		return m.printJSON(map[string]any{"InstanceConnectEndpoints": nonNil(views)})
	}
	rows := make([][]string, len(views))
	for i, v := range views {
		limits := ""
		if v.MaxConnections > 0 {
			limits = fmt.Sprintf("%d conns, %ds", v.MaxConnections, v.MaxTunnelDuration)
		}
		rows[i] = []string{aws.ToString(v.InstanceConnectEndpointId), aws.ToString(v.SubnetId), aws.ToString(v.VpcId),
			string(v.State), aws.ToString(v.DnsName), joinInts(v.AllowedPorts), limits, formatTags(v.Tags)}
	}
	return m.table([]string{"ENDPOINT ID", "SUBNET ID", "VPC ID", "STATE", "DNS NAME", "PORTS", "LIMITS", "TAGS"}, rows)
}

// intListFlag is a repeatable integer flag.
type intListFlag []int

func (l *intListFlag) String() string { return joinInts(*l) }

func (l *intListFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("%q is not a port number", part)
		}
		*l = append(*l, n)
	}
	return nil
}

// settingFlags are the flags of create and modify that set Postern's
// per-endpoint settings.
type settingFlags struct {
	ports       intListFlag
	maxConns    *int
	maxDuration *int
}

func addSettingFlags(fs *clientFlags) *settingFlags {
	s := &settingFlags{}
	fs.Var(&s.ports, "port", "a `port` tunnels may reach (repeatable or comma-separated; default 22 and 3389)")
	s.maxConns = fs.Int("max-connections", 0, "the most concurrent tunnels (default 20)")
	s.maxDuration = fs.Int("max-tunnel-duration", 0, "the longest a tunnel may live, in `seconds` (1 to 3600; default 3600)")
	return s
}

func (s *settingFlags) params() url.Values {
	v := url.Values{}
	for i, p := range s.ports {
		v.Set("AllowedPort."+strconv.Itoa(i+1), strconv.Itoa(p))
	}
	if *s.maxConns != 0 {
		v.Set("MaxConnections", strconv.Itoa(*s.maxConns))
	}
	if *s.maxDuration != 0 {
		v.Set("MaxTunnelDuration", strconv.Itoa(*s.maxDuration))
	}
	return v
}

func runEndpointCreate(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("endpoint create",
		"endpoint create --subnet-id SUBNET_ID [--port N…] [--max-connections N] [--max-tunnel-duration SECONDS] "+
			"[--security-group-id SG…] [--client-token TOKEN] [--tag KEY=VALUE…] [--output table|json]",
		"postern endpoint create --subnet-id subnet-0123456789abcdef0 --tag Name=office-edge\n"+
			"postern endpoint create --subnet-id subnet-0123456789abcdef0 --port 22 --port 5432 --max-connections 50")
	subnetID := fs.String("subnet-id", "", "the `subnet` the endpoint serves (one endpoint per subnet)")
	var groups listFlag
	fs.Var(&groups, "security-group-id", "a security group `id` to record (repeatable; Postern enforces none)")
	token := fs.String("client-token", "", "an idempotency `token`: retrying with it returns the same endpoint")
	tagPairs := tagFlag(fs, "a tag to set, `key=value` (repeatable)")
	settings := addSettingFlags(fs)
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *subnetID == "" {
		return usagef("endpoint create: --subnet-id is required")
	}
	tags, err := ec2Tags(*tagPairs)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var raw []byte
	out, err := client.EC2(cfg).CreateInstanceConnectEndpoint(ctx, &ec2.CreateInstanceConnectEndpointInput{
		SubnetId:          subnetID,
		SecurityGroupIds:  groups,
		ClientToken:       optionalString(*token),
		TagSpecifications: tagSpecifications(ec2types.ResourceTypeInstanceConnectEndpoint, tags),
	}, withQueryParams(settings.params()), withRawBody(&raw))
	if err != nil {
		return err
	}
	extras, credential := parseExtras(raw)
	e := *out.InstanceConnectEndpoint
	if fs.json() {
		x := extras[aws.ToString(e.InstanceConnectEndpointId)]
		return m.printJSON(map[string]any{
			"InstanceConnectEndpoint": endpointView{e, x.AllowedPorts, x.MaxConnections, x.MaxTunnelDuration},
			"JoinCredential":          credential,
		})
	}
	if err := m.printEndpoints(fs, []ec2types.Ec2InstanceConnectEndpoint{e}, extras, true); err != nil {
		return err
	}
	if credential == "" {
		fmt.Fprintf(m.Stdout, "\nThis endpoint was created earlier with the same client token; its join credential was shown then.\n")
		return nil
	}
	fmt.Fprintf(m.Stdout, "\nJoinCredential: %s\n\nThe credential is shown only this once: keep it for the endpoint host, where the endpoint process joins with it.\n", credential)
	return nil
}

func runEndpointList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("endpoint list", "endpoint list [--filter NAME=V1,V2…] [--output table|json] [ENDPOINT_ID…]",
		"postern endpoint list\npostern endpoint list --filter state=create-complete --filter vpc-id=vpc-0123456789abcdef0")
	filters := filterFlag(fs)
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	f, err := ec2Filters(*filters)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var es []ec2types.Ec2InstanceConnectEndpoint
	extras := map[string]endpointExtras{}
	in := &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: ids, Filters: f}
	ec := client.EC2(cfg)
	for {
		var raw []byte
		out, err := ec.DescribeInstanceConnectEndpoints(ctx, in, withRawBody(&raw))
		if err != nil {
			return err
		}
		es = append(es, out.InstanceConnectEndpoints...)
		page, _ := parseExtras(raw)
		for k, v := range page {
			extras[k] = v
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	return m.printEndpoints(fs, es, extras, false)
}

func runEndpointModify(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("endpoint modify",
		"endpoint modify [--port N…] [--max-connections N] [--max-tunnel-duration SECONDS] [--output table|json] ENDPOINT_ID",
		"postern endpoint modify eice-0123456789abcdef0 --port 22,3389,5432 --max-tunnel-duration 900")
	settings := addSettingFlags(fs)
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return usagef("endpoint modify: want one ENDPOINT_ID")
	}
	params := settings.params()
	if len(params) == 0 {
		return usagef("endpoint modify: nothing to change; give --port, --max-connections or --max-tunnel-duration")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	ec := client.EC2(cfg)
	if _, err := ec.ModifyInstanceConnectEndpoint(ctx, &ec2.ModifyInstanceConnectEndpointInput{
		InstanceConnectEndpointId: aws.String(ids[0]),
	}, withQueryParams(params)); err != nil {
		return err
	}
	var raw []byte
	out, err := ec.DescribeInstanceConnectEndpoints(ctx, &ec2.DescribeInstanceConnectEndpointsInput{InstanceConnectEndpointIds: ids}, withRawBody(&raw))
	if err != nil {
		return err
	}
	extras, _ := parseExtras(raw)
	return m.printEndpoints(fs, out.InstanceConnectEndpoints, extras, true)
}

func runEndpointDelete(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("endpoint delete", "endpoint delete [--output table|json] ENDPOINT_ID…",
		"postern endpoint delete eice-0123456789abcdef0")
	return m.eachID(ctx, fs, args, "delete", "ENDPOINT_ID", "Deleting %s.", func(ctx context.Context, cfg aws.Config, id string) error {
		_, err := client.EC2(cfg).DeleteInstanceConnectEndpoint(ctx, &ec2.DeleteInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String(id)})
		return err
	})
}
