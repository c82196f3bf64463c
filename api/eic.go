package api

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/keyrecord"
	"github.com/postern-dev/postern/sshkey"
	"github.com/postern-dev/postern/valid"
)

// KeyPusher delivers a signed key record to an instance's agent and
// returns once the agent acknowledged it.
type KeyPusher interface {
	Push(ctx context.Context, instanceID string, rec keyrecord.Signed) error
}

// KeyPush configures SendSSHPublicKey.
type KeyPush struct {
	Pusher   KeyPusher
	Signer   ed25519.PrivateKey // the key-signing key agents pinned
	Lifetime time.Duration      // how long a pushed key lives (60 s)
	Timeout  time.Duration      // how long to wait for the agent's acknowledgement
}

func (s *Server) eicService() *service {
	return &service{
		key: ec2InstanceConnectTarget, proto: protoJSON, signingName: "ec2-instance-connect",
		eventSource: "ec2-instance-connect.amazonaws.com",
		ops: map[string]*operation{
			"SendSSHPublicKey": {handle: sendSSHPublicKey},
		},
	}
}

func eicInvalid(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindInvalid, "InvalidArgsException", format, args...)
}

type sendSSHPublicKeyRequest struct {
	InstanceID       string `json:"InstanceId"`
	InstanceOSUser   string
	SSHPublicKey     string
	AvailabilityZone string
}

func sendSSHPublicKey(c *call) (any, error) {
	var req sendSSHPublicKeyRequest
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if err := c.pushKey(req); err != nil {
		return nil, err
	}
	return struct {
		RequestID string `json:"RequestId"`
		Success   bool
	}{c.id, true}, nil
}

// ConsoleUserAgent is the userAgent of the audit records of calls the web
// console makes on a signed-in user's behalf.
const ConsoleUserAgent = "postern-console"

// PushKeyAs is SendSSHPublicKey called by the server itself on behalf of
// p, a signed-in console user: the same validation, policy evaluation
// (env carries the user's source address) and delivery, audited as the
// user with userAgent ConsoleUserAgent and invokedBy in
// additionalEventData. It returns the request id; an error is a
// *postern.Error with the operation's code.
func (s *Server) PushKeyAs(ctx context.Context, p *authority.Principal, env authority.Env, instanceID, osUser, publicKey string) (string, error) {
	svc := s.services[ec2InstanceConnectTarget]
	if svc == nil {
		return "", postern.CodedErrorf(postern.KindUnavailable, "ServiceException", "This server does not push keys")
	}
	env.UserAgent = ConsoleUserAgent
	if env.Time.IsZero() {
		env.Time = s.now()
	}
	c := &call{
		s: s, ctx: ctx, start: env.Time, id: newRequestID(), svc: svc,
		opName: "SendSSHPublicKey", op: svc.ops["SendSSHPublicKey"], principal: p, env: env,
		params: map[string]any{"InstanceId": instanceID, "InstanceOSUser": osUser, "SSHPublicKey": publicKey},
	}
	err := c.pushKey(sendSSHPublicKeyRequest{InstanceID: instanceID, InstanceOSUser: osUser, SSHPublicKey: publicKey})
	if c.extra == nil {
		c.extra = map[string]any{}
	}
	c.extra["invokedBy"] = ConsoleUserAgent
	if aerr := c.record(err); aerr != nil {
		s.log.Error("audit write failed; failing the console key push", "request_id", c.id, "err", aerr)
		s.cfg.Metrics.auditFailures.Inc()
		return c.id, postern.Internal(aerr, "audit write failed")
	}
	status := http.StatusOK
	if err != nil {
		status = toWire(protoJSON, err).Status
	}
	s.cfg.Metrics.observe(c, status, err)
	return c.id, err
}

// pushKey validates req, authorizes it for the caller, signs the key
// record and delivers it, waiting for the agent's acknowledgement.
func (c *call) pushKey(req sendSSHPublicKeyRequest) error {
	kp := c.s.cfg.KeyPush
	switch {
	case !valid.HexID(req.InstanceID, "i-", 8, 30):
		return eicInvalid("InstanceId %q is not an instance id (i- followed by hexadecimal digits, 10 to 32 characters)", truncate(req.InstanceID, 40))
	case req.InstanceOSUser == "":
		return eicInvalid("InstanceOSUser is required")
	case !valid.OSUser(req.InstanceOSUser):
		return eicInvalid("InstanceOSUser %q is not a valid Linux user name", truncate(req.InstanceOSUser, 40))
	}
	key, err := sshkey.Parse(req.SSHPublicKey)
	if err != nil {
		// Whatever was sent may be a private key pasted by mistake: it
		// must not reach the audit trail.
		c.params["SSHPublicKey"] = audit.Redacted
		return err
	}
	arn := c.s.auth.EC2ARN("instance", req.InstanceID)
	inst, lookupErr := c.s.auth.Store().GetInstance(c.ctx, req.InstanceID)
	if lookupErr != nil && !postern.IsKind(lookupErr, postern.KindNotFound) {
		return lookupErr
	}
	keys := map[string][]string{"ec2:osuser": {req.InstanceOSUser}}
	if inst != nil {
		for k, v := range authority.ResourceTagContext(inst.Tags) {
			keys[k] = v
		}
	}
	c.extra = map[string]any{"keyFingerprint": key.Fingerprint, "keyType": key.Type}
	// Authorize before saying whether the instance exists: a caller with
	// no rights learns nothing about the inventory.
	if err := c.authorize("ec2-instance-connect:SendSSHPublicKey", arn, keys); err != nil {
		return err
	}
	if inst == nil {
		return postern.CodedErrorf(postern.KindNotFound, "EC2InstanceNotFoundException", "Instance %s was not found", req.InstanceID)
	}
	if inst.State != postern.InstanceRunning && inst.State != postern.InstancePending {
		return postern.CodedErrorf(postern.KindConflict, "EC2InstanceStateInvalidException", "Instance %s is %s; keys can be pushed only to running instances", inst.ID, inst.State)
	}
	now := c.s.now().UTC()
	rec := keyrecord.Record{
		InstanceID: inst.ID, OSUser: req.InstanceOSUser, Key: key.Line, Fingerprint: key.Fingerprint,
		RequestID: c.id, Caller: c.principal.ARN, IssuedAt: now, ExpiresAt: now.Add(kp.Lifetime),
	}
	signed, err := keyrecord.Sign(rec, kp.Signer)
	if err != nil {
		return postern.Internal(err, "cannot sign the key record")
	}
	ctx, cancel := context.WithTimeout(c.ctx, kp.Timeout)
	defer cancel()
	if err := kp.Pusher.Push(ctx, inst.ID, signed); err != nil {
		c.s.log.Warn("key push failed", "request_id", c.id, "instance", inst.ID, "err", err)
		return postern.CodedErrorf(postern.KindUnavailable, "EC2InstanceUnavailableException",
			"The agent of instance %s did not confirm the key in time; it may be offline. Nothing was installed.", inst.ID)
	}
	c.extra["keyExpiresAt"] = rec.ExpiresAt.Format(time.RFC3339)
	c.response = map[string]any{"success": true}
	return nil
}
