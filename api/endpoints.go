package api

import (
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
)

// Instance Connect Endpoints over the EC2 Query API. Per-endpoint settings
// travel as Postern extensions, which stock SDKs leave alone: request
// parameters AllowedPort.N, MaxConnections and MaxTunnelDuration (seconds)
// on Create and Modify, and the elements posternAllowedPortSet,
// posternMaxConnections and posternMaxTunnelDuration in every endpoint.
// The join credential is the posternJoinCredential element of the create
// response, shown once and never audited.

type xmlEndpoint struct {
	OwnerID             string   `xml:"ownerId"`
	ID                  string   `xml:"instanceConnectEndpointId"`
	ARN                 string   `xml:"instanceConnectEndpointArn"`
	State               string   `xml:"state"`
	StateMessage        string   `xml:"stateMessage,omitempty"`
	DNSName             string   `xml:"dnsName,omitempty"`
	FIPSDNSName         string   `xml:"fipsDnsName,omitempty"`
	NetworkInterfaceIDs []string `xml:"networkInterfaceIdSet>item"`
	VpcID               string   `xml:"vpcId"`
	AvailabilityZone    string   `xml:"availabilityZone"`
	CreatedAt           string   `xml:"createdAt"`
	SubnetID            string   `xml:"subnetId"`
	PreserveClientIP    bool     `xml:"preserveClientIp"`
	SecurityGroupIDs    []string `xml:"securityGroupIdSet>item"`
	Tags                []xmlTag `xml:"tagSet>item,omitempty"`
	IPAddressType       string   `xml:"ipAddressType"`

	AllowedPorts      []int `xml:"posternAllowedPortSet>item"`
	MaxConnections    int   `xml:"posternMaxConnections"`
	MaxTunnelDuration int64 `xml:"posternMaxTunnelDuration"`
	// LiveTunnels is set by Describe: the tunnels open now, across the
	// endpoint's processes.
	LiveTunnels *int `xml:"posternLiveTunnels,omitempty"`
}

func (c *call) endpointARN(id string) string { return c.s.auth.EC2ARN("instance-connect-endpoint", id) }

func (c *call) xmlEndpoint(e *postern.Endpoint) xmlEndpoint {
	return xmlEndpoint{
		OwnerID: c.s.auth.Config().Account, ID: e.ID, ARN: c.endpointARN(e.ID), State: e.State, StateMessage: e.StateMessage,
		DNSName: e.DNSName, FIPSDNSName: e.FIPSDNSName, VpcID: e.VPCID, AvailabilityZone: e.AvailabilityZone,
		CreatedAt: ec2Time(e.CreatedAt), SubnetID: e.SubnetID, PreserveClientIP: e.PreserveClientIP,
		SecurityGroupIDs: e.SecurityGroupIDs, Tags: xmlTags(e.Tags), IPAddressType: "ipv4",
		AllowedPorts: e.AllowedPorts, MaxConnections: e.MaxConnections, MaxTunnelDuration: int64(e.MaxTunnelDuration / time.Second),
	}
}

// endpointSettingParams reads the Postern extension parameters.
func (c *call) endpointSettingParams() (ports []int, conns *int, dur *time.Duration, err error) {
	if ports, err = c.ints("AllowedPort"); err != nil {
		return
	}
	if conns, err = c.optInt("MaxConnections"); err != nil {
		return
	}
	secs, err := c.optInt("MaxTunnelDuration")
	if err != nil || secs == nil {
		return
	}
	if *secs < 1 || *secs > int(authority.MaxEndpointTunnelDuration/time.Second) {
		return nil, nil, nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue",
			"Value (%d) for parameter MaxTunnelDuration is invalid. It must be between 1 and %d seconds.", *secs, int(authority.MaxEndpointTunnelDuration/time.Second))
	}
	d := time.Duration(*secs) * time.Second
	return ports, conns, &d, nil
}

type createEndpointResponse struct {
	ec2Meta
	Endpoint    xmlEndpoint `xml:"instanceConnectEndpoint"`
	ClientToken string      `xml:"clientToken,omitempty"`
	// Shown once: the credential `postern endpoint run` joins with.
	JoinCredential string `xml:"posternJoinCredential,omitempty"`
}

func createInstanceConnectEndpoint(c *call) (any, error) {
	subnetID, err := c.required("SubnetId")
	if err != nil {
		return nil, err
	}
	groups, err := c.list("SecurityGroupId")
	if err != nil {
		return nil, err
	}
	preserve, err := c.optBool("PreserveClientIp")
	if err != nil {
		return nil, err
	}
	tags, err := c.tagSpecifications("instance-connect-endpoint")
	if err != nil {
		return nil, err
	}
	ports, conns, dur, err := c.endpointSettingParams()
	if err != nil {
		return nil, err
	}
	in := authority.EndpointInput{
		SubnetID: subnetID, SecurityGroupIDs: groups, PreserveClientIP: preserve != nil && *preserve,
		ClientToken: c.str("ClientToken"), IPAddressType: c.str("IpAddressType"), Tags: tags,
		Settings: postern.EndpointSettings{AllowedPorts: ports},
	}
	if conns != nil {
		if *conns < 1 {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%d) for parameter MaxConnections is invalid. It must be at least 1.", *conns)
		}
		in.Settings.MaxConnections = *conns
	}
	if dur != nil {
		in.Settings.MaxTunnelDuration = *dur
	}
	keys := map[string][]string{}
	for _, t := range tags {
		keys["aws:RequestTag/"+t.Key] = []string{t.Value}
		keys["aws:TagKeys"] = append(keys["aws:TagKeys"], t.Key)
	}
	if err := c.authorize("ec2:CreateInstanceConnectEndpoint", c.s.auth.EC2ARN("subnet", subnetID), keys); err != nil {
		return nil, err
	}
	e, credential, _, err := c.s.auth.CreateEndpoint(c.ctx, in, c.principal.ARN)
	if err != nil {
		return nil, err
	}
	c.addResource(c.endpointARN(e.ID))
	// The credential goes to the caller once; the trail keeps only the id.
	c.response = map[string]any{"instanceConnectEndpointId": e.ID, "subnetId": e.SubnetID, "state": e.State}
	return &createEndpointResponse{Endpoint: c.xmlEndpoint(e), ClientToken: in.ClientToken, JoinCredential: credential}, nil
}

type describeEndpointsResponse struct {
	ec2Meta
	Endpoints []xmlEndpoint `xml:"instanceConnectEndpointSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

func describeInstanceConnectEndpoints(c *call) (any, error) {
	ids, filters, err := c.describeArgs("InstanceConnectEndpointId")
	if err != nil {
		return nil, err
	}
	maxResults, err := c.optInt("MaxResults")
	if err != nil {
		return nil, err
	}
	limit := 0
	if maxResults != nil {
		if limit = *maxResults; limit == 0 {
			limit = -1 // given as 0: out of range, not "all"
		}
	}
	if err := c.authorize("ec2:DescribeInstanceConnectEndpoints", "*", nil); err != nil {
		return nil, err
	}
	es, next, err := c.s.auth.DescribeEndpoints(c.ctx, ids, filters, limit, c.str("NextToken"))
	if err != nil {
		return nil, err
	}
	live, err := c.s.auth.LiveTunnels(c.ctx)
	if err != nil {
		return nil, err
	}
	resp := &describeEndpointsResponse{Endpoints: []xmlEndpoint{}, NextToken: next}
	for i := range es {
		x := c.xmlEndpoint(&es[i])
		n := live[es[i].ID]
		x.LiveTunnels = &n
		resp.Endpoints = append(resp.Endpoints, x)
	}
	return resp, nil
}

// endpointAccess authorizes action on an endpoint, with its tags as
// aws:ResourceTag keys when it exists.
func (c *call) endpointAccess(action, id string) error {
	keys := map[string][]string{}
	if current, err := c.s.auth.ResourceTags(c.ctx, id); err == nil {
		keys = authority.ResourceTagContext(current)
	}
	return c.authorize(action, c.endpointARN(id), keys)
}

func modifyInstanceConnectEndpoint(c *call) (any, error) {
	id, err := c.required("InstanceConnectEndpointId")
	if err != nil {
		return nil, err
	}
	groups, err := c.list("SecurityGroupId")
	if err != nil {
		return nil, err
	}
	preserve, err := c.optBool("PreserveClientIp")
	if err != nil {
		return nil, err
	}
	ports, conns, dur, err := c.endpointSettingParams()
	if err != nil {
		return nil, err
	}
	ch := authority.EndpointChange{PreserveClientIP: preserve, IPAddressType: c.str("IpAddressType"),
		AllowedPorts: ports, MaxConnections: conns, MaxTunnelDuration: dur}
	if len(groups) > 0 {
		ch.SecurityGroupIDs = groups
	}
	if err := c.endpointAccess("ec2:ModifyInstanceConnectEndpoint", id); err != nil {
		return nil, err
	}
	e, err := c.s.auth.ModifyEndpoint(c.ctx, id, ch)
	if err != nil {
		return nil, err
	}
	c.response = map[string]any{"instanceConnectEndpointId": e.ID, "allowedPorts": e.AllowedPorts,
		"maxConnections": e.MaxConnections, "maxTunnelDuration": int64(e.MaxTunnelDuration / time.Second)}
	return &returnResponse{Return: true}, nil
}

type deleteEndpointResponse struct {
	ec2Meta
	Endpoint xmlEndpoint `xml:"instanceConnectEndpoint"`
}

func deleteInstanceConnectEndpoint(c *call) (any, error) {
	id, err := c.required("InstanceConnectEndpointId")
	if err != nil {
		return nil, err
	}
	if err := c.endpointAccess("ec2:DeleteInstanceConnectEndpoint", id); err != nil {
		return nil, err
	}
	e, err := c.s.auth.DeleteEndpoint(c.ctx, id)
	if err != nil {
		return nil, err
	}
	c.response = map[string]any{"instanceConnectEndpointId": e.ID, "state": e.State}
	return &deleteEndpointResponse{Endpoint: c.xmlEndpoint(e)}, nil
}
