package api

import (
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
)

const (
	ec2Version   = "2016-11-15"
	ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"
)

func (s *Server) ec2Service() *service {
	return &service{
		key: ec2Version, proto: protoEC2Query, signingName: "ec2",
		eventSource: "ec2.amazonaws.com", xmlns: ec2Namespace,
		ops: map[string]*operation{
			"DescribeInstances": {readOnly: true, handle: describeInstances},
			"DescribeVpcs":      {readOnly: true, handle: describeVpcs},
			"DescribeSubnets":   {readOnly: true, handle: describeSubnets},
			"CreateVpc":         {handle: createVpc},
			"DeleteVpc":         {handle: deleteVpc},
			"CreateSubnet":      {handle: createSubnet},
			"DeleteSubnet":      {handle: deleteSubnet},
			"CreateTags":        {handle: createTags},
			"DeleteTags":        {handle: deleteTags},

			"CreateInstanceConnectEndpoint":    {handle: createInstanceConnectEndpoint},
			"DescribeInstanceConnectEndpoints": {readOnly: true, handle: describeInstanceConnectEndpoints},
			"ModifyInstanceConnectEndpoint":    {handle: modifyInstanceConnectEndpoint},
			"DeleteInstanceConnectEndpoint":    {handle: deleteInstanceConnectEndpoint},
		},
	}
}

// XML shapes, with the element names of the EC2 2016-11-15 model.

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(tags []postern.Tag) []xmlTag {
	out := make([]xmlTag, len(tags))
	for i, t := range tags {
		out[i] = xmlTag{t.Key, t.Value}
	}
	return out
}

type xmlCidrAssociation struct {
	AssociationID string `xml:"associationId"`
	CidrBlock     string `xml:"cidrBlock"`
	State         string `xml:"cidrBlockState>state"`
}

type xmlVpc struct {
	VpcID           string               `xml:"vpcId"`
	OwnerID         string               `xml:"ownerId"`
	State           string               `xml:"state"`
	CidrBlock       string               `xml:"cidrBlock,omitempty"`
	CidrAssociation []xmlCidrAssociation `xml:"cidrBlockAssociationSet>item,omitempty"`
	Ipv6Association []xmlCidrAssociation `xml:"ipv6CidrBlockAssociationSet>item,omitempty"`
	InstanceTenancy string               `xml:"instanceTenancy"`
	IsDefault       bool                 `xml:"isDefault"`
	Tags            []xmlTag             `xml:"tagSet>item,omitempty"`
}

func (c *call) xmlVpc(v *postern.VPC) xmlVpc {
	x := xmlVpc{VpcID: v.ID, OwnerID: c.s.auth.Config().Account, State: v.State, InstanceTenancy: "default", Tags: xmlTags(v.Tags)}
	assoc := []xmlCidrAssociation{{AssociationID: "vpc-cidr-assoc-" + v.ID[4:], CidrBlock: v.CIDR, State: "associated"}}
	if isIPv6(v.CIDR) {
		x.Ipv6Association = assoc
	} else {
		x.CidrBlock, x.CidrAssociation = v.CIDR, assoc
	}
	return x
}

type xmlSubnet struct {
	SubnetID         string   `xml:"subnetId"`
	SubnetArn        string   `xml:"subnetArn"`
	State            string   `xml:"state"`
	VpcID            string   `xml:"vpcId"`
	OwnerID          string   `xml:"ownerId"`
	CidrBlock        string   `xml:"cidrBlock,omitempty"`
	Ipv6CidrBlock    string   `xml:"ipv6CidrBlockAssociationSet>item>ipv6CidrBlock,omitempty"`
	AvailabilityZone string   `xml:"availabilityZone"`
	DefaultForAz     bool     `xml:"defaultForAz"`
	MapPublicIP      bool     `xml:"mapPublicIpOnLaunch"`
	Tags             []xmlTag `xml:"tagSet>item,omitempty"`
}

func (c *call) xmlSubnet(s *postern.Subnet) xmlSubnet {
	x := xmlSubnet{SubnetID: s.ID, SubnetArn: c.s.auth.EC2ARN("subnet", s.ID), State: s.State, VpcID: s.VPCID,
		OwnerID: c.s.auth.Config().Account, AvailabilityZone: s.AvailabilityZone, Tags: xmlTags(s.Tags)}
	if isIPv6(s.CIDR) {
		x.Ipv6CidrBlock = s.CIDR
	} else {
		x.CidrBlock = s.CIDR
	}
	return x
}

// instanceStateCodes are EC2's numeric state codes.
var instanceStateCodes = map[string]int{
	postern.InstancePending: 0, postern.InstanceRunning: 16, "shutting-down": 32,
	postern.InstanceTerminated: 48, "stopping": 64, postern.InstanceStopped: 80,
}

type xmlInstance struct {
	InstanceID       string   `xml:"instanceId"`
	ImageID          string   `xml:"imageId"`
	StateCode        int      `xml:"instanceState>code"`
	StateName        string   `xml:"instanceState>name"`
	PrivateDNSName   string   `xml:"privateDnsName"`
	DNSName          string   `xml:"dnsName"`
	InstanceType     string   `xml:"instanceType"`
	LaunchTime       string   `xml:"launchTime"`
	AvailabilityZone string   `xml:"placement>availabilityZone"`
	PlatformDetails  string   `xml:"platformDetails"`
	SubnetID         string   `xml:"subnetId,omitempty"`
	VpcID            string   `xml:"vpcId,omitempty"`
	PrivateIP        string   `xml:"privateIpAddress,omitempty"`
	PublicIP         string   `xml:"ipAddress,omitempty"`
	Architecture     string   `xml:"architecture"`
	Tags             []xmlTag `xml:"tagSet>item,omitempty"`
	// LastHeartbeat is when the instance's agent was last heard from (a
	// Postern extension; SDKs skip elements they do not know).
	LastHeartbeat string `xml:"posternLastHeartbeat,omitempty"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

func isIPv6(cidr string) bool {
	for i := 0; i < len(cidr); i++ {
		if cidr[i] == ':' {
			return true
		}
	}
	return false
}

// optTime is ec2Time, or "" for the zero time.
func optTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ec2Time(t)
}

func ec2Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

type describeVpcsResponse struct {
	ec2Meta
	Vpcs []xmlVpc `xml:"vpcSet>item"`
}

func describeVpcs(c *call) (any, error) {
	ids, filters, err := c.describeArgs("VpcId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:DescribeVpcs", "*", nil); err != nil {
		return nil, err
	}
	vpcs, err := c.s.auth.DescribeVPCs(c.ctx, ids, filters)
	if err != nil {
		return nil, err
	}
	resp := &describeVpcsResponse{Vpcs: []xmlVpc{}}
	for i := range vpcs {
		resp.Vpcs = append(resp.Vpcs, c.xmlVpc(&vpcs[i]))
	}
	return resp, nil
}

type describeSubnetsResponse struct {
	ec2Meta
	Subnets []xmlSubnet `xml:"subnetSet>item"`
}

func describeSubnets(c *call) (any, error) {
	ids, filters, err := c.describeArgs("SubnetId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:DescribeSubnets", "*", nil); err != nil {
		return nil, err
	}
	subnets, err := c.s.auth.DescribeSubnets(c.ctx, ids, filters)
	if err != nil {
		return nil, err
	}
	resp := &describeSubnetsResponse{Subnets: []xmlSubnet{}}
	for i := range subnets {
		resp.Subnets = append(resp.Subnets, c.xmlSubnet(&subnets[i]))
	}
	return resp, nil
}

type describeInstancesResponse struct {
	ec2Meta
	Reservations []xmlReservation `xml:"reservationSet>item"`
}

func describeInstances(c *call) (any, error) {
	ids, filters, err := c.describeArgs("InstanceId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:DescribeInstances", "*", nil); err != nil {
		return nil, err
	}
	instances, err := c.s.auth.DescribeInstances(c.ctx, ids, filters)
	if err != nil {
		return nil, err
	}
	account := c.s.auth.Config().Account
	resp := &describeInstancesResponse{Reservations: []xmlReservation{}}
	// Postern has no launch requests; each instance is its own reservation.
	for _, i := range instances {
		az := c.s.auth.Config().Region + "a"
		resp.Reservations = append(resp.Reservations, xmlReservation{
			ReservationID: "r-" + i.ID[2:],
			OwnerID:       account,
			Instances: []xmlInstance{{
				InstanceID: i.ID, ImageID: "ami-00000000", StateCode: instanceStateCodes[i.State], StateName: i.State,
				PrivateDNSName: i.Hostname, InstanceType: "postern.managed", LaunchTime: ec2Time(i.LaunchTime),
				AvailabilityZone: az, PlatformDetails: i.Platform, SubnetID: i.SubnetID, VpcID: i.VPCID,
				PrivateIP: i.PrivateIP, PublicIP: i.PublicIP, Architecture: "x86_64", Tags: xmlTags(i.Tags),
				LastHeartbeat: optTime(i.LastSeen),
			}},
		})
	}
	return resp, nil
}

// describeArgs reads the id list and the filters common to Describe calls.
func (c *call) describeArgs(idParam string) ([]string, []postern.Filter, error) {
	ids, err := c.list(idParam)
	if err != nil {
		return nil, nil, err
	}
	filters, err := c.filters()
	return ids, filters, err
}

type createVpcResponse struct {
	ec2Meta
	Vpc xmlVpc `xml:"vpc"`
}

func createVpc(c *call) (any, error) {
	cidr, err := c.required("CidrBlock")
	if err != nil {
		return nil, err
	}
	tags, err := c.tagSpecifications("vpc")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:CreateVpc", c.s.auth.EC2ARN("vpc", "*"), nil); err != nil {
		return nil, err
	}
	v, err := c.s.auth.CreateVPC(c.ctx, cidr, tags)
	if err != nil {
		return nil, err
	}
	c.addResource(c.s.auth.EC2ARN("vpc", v.ID))
	c.response = map[string]any{"vpcId": v.ID, "cidrBlock": v.CIDR}
	return &createVpcResponse{Vpc: c.xmlVpc(v)}, nil
}

type returnResponse struct {
	ec2Meta
	Return bool `xml:"return"`
}

func deleteVpc(c *call) (any, error) {
	id, err := c.required("VpcId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:DeleteVpc", c.s.auth.EC2ARN("vpc", id), nil); err != nil {
		return nil, err
	}
	if err := c.s.auth.DeleteVPC(c.ctx, id); err != nil {
		return nil, err
	}
	return &returnResponse{Return: true}, nil
}

type createSubnetResponse struct {
	ec2Meta
	Subnet xmlSubnet `xml:"subnet"`
}

func createSubnet(c *call) (any, error) {
	vpcID, err := c.required("VpcId")
	if err != nil {
		return nil, err
	}
	cidr := c.str("CidrBlock")
	if cidr == "" {
		cidr = c.str("Ipv6CidrBlock")
	}
	if cidr == "" {
		return nil, postern.CodedErrorf(postern.KindInvalid, "MissingParameter", "The request must contain the parameter CidrBlock")
	}
	tags, err := c.tagSpecifications("subnet")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:CreateSubnet", c.s.auth.EC2ARN("vpc", vpcID), nil); err != nil {
		return nil, err
	}
	s, err := c.s.auth.CreateSubnet(c.ctx, vpcID, cidr, c.str("AvailabilityZone"), tags)
	if err != nil {
		return nil, err
	}
	c.addResource(c.s.auth.EC2ARN("subnet", s.ID))
	c.response = map[string]any{"subnetId": s.ID, "vpcId": s.VPCID, "cidrBlock": s.CIDR}
	return &createSubnetResponse{Subnet: c.xmlSubnet(s)}, nil
}

func deleteSubnet(c *call) (any, error) {
	id, err := c.required("SubnetId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:DeleteSubnet", c.s.auth.EC2ARN("subnet", id), nil); err != nil {
		return nil, err
	}
	if err := c.s.auth.DeleteSubnet(c.ctx, id); err != nil {
		return nil, err
	}
	return &returnResponse{Return: true}, nil
}

// tagArgs reads ResourceId.N and Tag.N for CreateTags/DeleteTags and
// authorizes action on every resource, with its current tags as
// aws:ResourceTag keys.
func (c *call) tagArgs(action string) ([]string, []postern.Tag, error) {
	ids, err := c.list("ResourceId")
	if err != nil {
		return nil, nil, err
	}
	tags, err := c.tags("Tag")
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		keys := map[string][]string{}
		if current, err := c.s.auth.ResourceTags(c.ctx, id); err == nil {
			keys = authority.ResourceTagContext(current)
		}
		for _, t := range tags {
			keys["aws:RequestTag/"+t.Key] = []string{t.Value}
			keys["aws:TagKeys"] = append(keys["aws:TagKeys"], t.Key)
		}
		if err := c.authorize(action, c.s.auth.ResourceARN(id), keys); err != nil {
			return nil, nil, err
		}
	}
	return ids, tags, nil
}

func createTags(c *call) (any, error) {
	ids, tags, err := c.tagArgs("ec2:CreateTags")
	if err != nil {
		return nil, err
	}
	if err := c.s.auth.CreateTags(c.ctx, ids, tags); err != nil {
		return nil, err
	}
	return &returnResponse{Return: true}, nil
}

func deleteTags(c *call) (any, error) {
	ids, _, err := c.tagArgs("ec2:DeleteTags")
	if err != nil {
		return nil, err
	}
	sel, err := c.tagSelectors("Tag")
	if err != nil {
		return nil, err
	}
	if err := c.s.auth.DeleteTags(c.ctx, ids, sel); err != nil {
		return nil, err
	}
	return &returnResponse{Return: true}, nil
}
