package api

import (
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
)

const ssmTarget = "AmazonSSM"

// ssmService serves the hybrid-activation subset of Systems Manager that
// registers agents: CreateActivation, DescribeActivations,
// DeleteActivation and DeregisterManagedInstance.
func (s *Server) ssmService() *service {
	return &service{
		key: ssmTarget, proto: protoJSON, signingName: "ssm", eventSource: "ssm.amazonaws.com",
		ops: map[string]*operation{
			"CreateActivation":          {handle: createActivation},
			"DescribeActivations":       {readOnly: true, handle: describeActivations},
			"DeleteActivation":          {handle: deleteActivation},
			"DeregisterManagedInstance": {handle: deregisterManagedInstance},
		},
	}
}

func (c *call) activationARN(id string) string {
	cfg := c.s.auth.Config()
	return "arn:aws:ssm:" + cfg.Region + ":" + cfg.Account + ":activation/" + id
}

type jsonTag struct {
	Key   string
	Value string
}

func fromJSONTags(tags []jsonTag) []postern.Tag {
	out := make([]postern.Tag, len(tags))
	for i, t := range tags {
		out[i] = postern.Tag{Key: t.Key, Value: t.Value}
	}
	return out
}

func toJSONTags(tags []postern.Tag) []jsonTag {
	out := make([]jsonTag, len(tags))
	for i, t := range tags {
		out[i] = jsonTag{t.Key, t.Value}
	}
	return out
}

func createActivation(c *call) (any, error) {
	var req struct {
		Description          string
		DefaultInstanceName  string
		IamRole              string // accepted for compatibility; Postern has no roles
		RegistrationLimit    int
		ExpirationDate       *epochTime
		Tags                 []jsonTag
		RegistrationMetadata []struct{ Key, Value string }
		// VpcId is a Postern extension: instances join this VPC.
		VpcID string `json:"VpcId"`
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	in := authority.ActivationInput{
		Description: req.Description, DefaultInstanceName: req.DefaultInstanceName,
		RegistrationLimit: req.RegistrationLimit, VPCID: req.VpcID, Tags: fromJSONTags(req.Tags),
	}
	if req.ExpirationDate != nil {
		in.TTL = req.ExpirationDate.Sub(c.s.now())
		if in.TTL <= 0 {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidParameters", "ExpirationDate is in the past")
		}
	}
	if err := c.authorize("ssm:CreateActivation", c.activationARN("*"), nil); err != nil {
		return nil, err
	}
	act, code, err := c.s.auth.CreateActivation(c.ctx, in, c.principal.ARN)
	if err != nil {
		return nil, err
	}
	c.addResource(c.activationARN(act.ID))
	// The code goes to the caller once; the trail keeps only the id.
	c.response = map[string]any{"activationId": act.ID}
	return struct {
		ActivationID   string `json:"ActivationId"`
		ActivationCode string
	}{act.ID, code}, nil
}

type activationJSON struct {
	ActivationID        string `json:"ActivationId"`
	Description         string
	DefaultInstanceName string
	RegistrationLimit   int
	RegistrationsCount  int
	ExpirationDate      epochTime
	Expired             bool
	CreatedDate         epochTime
	Tags                []jsonTag
	VpcID               string `json:"VpcId,omitempty"`
}

func describeActivations(c *call) (any, error) {
	var req struct {
		Filters []struct {
			FilterKey    string
			FilterValues []string
		}
		MaxResults int
		NextToken  string
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if err := c.authorize("ssm:DescribeActivations", "*", nil); err != nil {
		return nil, err
	}
	acts, err := c.s.auth.Store().ListActivations(c.ctx)
	if err != nil {
		return nil, err
	}
	now := c.s.now()
	out := struct{ ActivationList []activationJSON }{ActivationList: []activationJSON{}}
	for _, a := range acts {
		keep := true
		for _, f := range req.Filters {
			var have string
			switch f.FilterKey {
			case "ActivationIds":
				have = a.ID
			case "DefaultInstanceName":
				have = a.DefaultInstanceName
			default:
				return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidFilter", "filter %q is not supported; use ActivationIds or DefaultInstanceName", f.FilterKey)
			}
			match := false
			for _, v := range f.FilterValues {
				match = match || v == have
			}
			keep = keep && match
		}
		if !keep {
			continue
		}
		out.ActivationList = append(out.ActivationList, activationJSON{
			ActivationID: a.ID, Description: a.Description, DefaultInstanceName: a.DefaultInstanceName,
			RegistrationLimit: a.RegistrationLimit, RegistrationsCount: a.RegistrationCount,
			ExpirationDate: epochTime{a.ExpiresAt}, Expired: !now.Before(a.ExpiresAt), CreatedDate: epochTime{a.CreatedAt},
			Tags: toJSONTags(a.Tags), VpcID: a.VPCID,
		})
	}
	return out, nil
}

func deleteActivation(c *call) (any, error) {
	var req struct {
		ActivationID string `json:"ActivationId"`
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if err := authority.CheckActivationID(req.ActivationID); err != nil {
		return nil, err
	}
	if err := c.authorize("ssm:DeleteActivation", c.activationARN(req.ActivationID), nil); err != nil {
		return nil, err
	}
	err := c.s.auth.Store().DeleteActivation(c.ctx, req.ActivationID)
	if postern.IsKind(err, postern.KindNotFound) {
		return nil, postern.CodedErrorf(postern.KindNotFound, "InvalidActivationId", "Activation %s does not exist", req.ActivationID)
	}
	return struct{}{}, err
}

func deregisterManagedInstance(c *call) (any, error) {
	var req struct {
		InstanceID string `json:"InstanceId"`
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	arn := c.s.auth.EC2ARN("instance", req.InstanceID)
	if err := c.authorize("ssm:DeregisterManagedInstance", arn, nil); err != nil {
		return nil, err
	}
	if err := c.s.auth.Deregister(c.ctx, req.InstanceID); err != nil {
		if postern.IsKind(err, postern.KindNotFound) {
			return nil, postern.CodedErrorf(postern.KindNotFound, "InvalidInstanceId", "Instance %s does not exist", req.InstanceID)
		}
		return nil, err
	}
	return struct{}{}, nil
}

// getInstanceConnectInfo tells a client how to reach an instance and which
// host keys to expect (a Postern extension, for `postern ssh`).
func getInstanceConnectInfo(c *call) (any, error) {
	var req struct {
		InstanceID string `json:"InstanceId"`
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if err := c.authorize("ec2:DescribeInstances", "*", nil); err != nil {
		return nil, err
	}
	insts, err := c.s.auth.DescribeInstances(c.ctx, []string{req.InstanceID}, nil)
	if err != nil {
		return nil, err
	}
	i := insts[0]
	return struct {
		InstanceID       string `json:"InstanceId"`
		Name             string
		State            string
		PrivateIPAddress string `json:"PrivateIpAddress"`
		PublicIPAddress  string `json:"PublicIpAddress"`
		VpcID            string `json:"VpcId"`
		SubnetID         string `json:"SubnetId"`
		SSHPort          int    `json:"SshPort"`
		HostKeys         []string
		LastSeen         time.Time
	}{i.ID, i.Name(), i.State, i.PrivateIP, i.PublicIP, i.VPCID, i.SubnetID, i.SSHPort, i.HostKeys, i.LastSeen}, nil
}
