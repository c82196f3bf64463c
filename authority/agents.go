package authority

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/agentproto"
	"github.com/postern-dev/postern/valid"
)

// Activation limits, as Systems Manager has them.
const (
	DefaultActivationTTL = 24 * time.Hour
	MaxActivationTTL     = 30 * 24 * time.Hour
	maxRegistrationLimit = 1000
)

// ActivationInput is what CreateActivation accepts.
type ActivationInput struct {
	Description         string
	DefaultInstanceName string
	RegistrationLimit   int           // 0 means 1
	TTL                 time.Duration // 0 means DefaultActivationTTL
	VPCID               string
	Tags                []postern.Tag
}

// CreateActivation creates an activation and returns it with its code,
// which is shown this once and stored only as a hash.
func (a *Authority) CreateActivation(ctx context.Context, in ActivationInput, caller string) (*postern.Activation, string, error) {
	if in.RegistrationLimit == 0 {
		in.RegistrationLimit = 1
	}
	if in.TTL == 0 {
		in.TTL = DefaultActivationTTL
	}
	switch {
	case in.RegistrationLimit < 1 || in.RegistrationLimit > maxRegistrationLimit:
		return nil, "", postern.CodedErrorf(postern.KindInvalid, "ValidationException", "RegistrationLimit must be between 1 and %d, got %d", maxRegistrationLimit, in.RegistrationLimit)
	case in.TTL < time.Minute || in.TTL > MaxActivationTTL:
		return nil, "", postern.CodedErrorf(postern.KindInvalid, "ValidationException", "the activation must expire between 1 minute and 30 days from now")
	case len(in.Description) > 256:
		return nil, "", postern.CodedErrorf(postern.KindInvalid, "ValidationException", "Description must be at most 256 characters")
	case len(in.DefaultInstanceName) > 256:
		return nil, "", postern.CodedErrorf(postern.KindInvalid, "ValidationException", "DefaultInstanceName must be at most 256 characters")
	}
	if err := ValidateTags(in.Tags); err != nil {
		return nil, "", err
	}
	if in.VPCID != "" {
		if err := checkIDs(vpcKind, []string{in.VPCID}); err != nil {
			return nil, "", err
		}
		if _, err := a.store.GetVPC(ctx, in.VPCID); err != nil {
			return nil, "", notFound(err, vpcKind)
		}
	}
	var raw [16]byte
	mustRead(raw[:])
	h := hex.EncodeToString(raw[:])
	id := h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	var c [15]byte
	mustRead(c[:])
	code := base32.StdEncoding.EncodeToString(c[:]) // 24 characters, no padding
	sum := sha256.Sum256([]byte(code))
	now := a.now().UTC()
	act := &postern.Activation{
		ID: id, CodeHash: sum[:], Description: in.Description, DefaultInstanceName: in.DefaultInstanceName,
		RegistrationLimit: in.RegistrationLimit, ExpiresAt: now.Add(in.TTL), VPCID: in.VPCID, Tags: in.Tags,
		CreatedAt: now, CreatedBy: caller,
	}
	if err := a.store.CreateActivation(ctx, act); err != nil {
		return nil, "", err
	}
	return act, code, nil
}

// CheckActivationID validates an activation id's form.
func CheckActivationID(id string) error {
	if !valid.UUID(id) {
		return postern.CodedErrorf(postern.KindInvalid, "InvalidActivationId", "ActivationId %q is not an activation id", truncate(id, 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// errBadActivation is the one answer to a wrong id or code: a guesser
// learns nothing about which part was wrong.
func errBadActivation() error {
	return postern.CodedErrorf(postern.KindDenied, "InvalidActivation", "The activation id or code is not valid.")
}

// Registration is an agent's request to register.
type Registration struct {
	ActivationID   string
	ActivationCode string
	AgentKey       ed25519.PublicKey
	Report         agentproto.Report
}

// RegisterAgent checks an activation and registers a new instance for the
// agent. A wrong code consumes nothing.
func (a *Authority) RegisterAgent(ctx context.Context, r Registration) (*postern.Instance, error) {
	if err := CheckActivationID(r.ActivationID); err != nil {
		return nil, err
	}
	if len(r.AgentKey) != ed25519.PublicKeySize {
		return nil, postern.CodedErrorf(postern.KindInvalid, "ValidationException", "the agent's public key must be an Ed25519 key")
	}
	act, err := a.store.GetActivation(ctx, r.ActivationID)
	if postern.IsKind(err, postern.KindNotFound) {
		return nil, errBadActivation()
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(r.ActivationCode))
	if subtle.ConstantTimeCompare(sum[:], act.CodeHash) != 1 {
		return nil, errBadActivation()
	}
	now := a.now().UTC()
	inst := &postern.Instance{
		ID: NewResourceID("i"), State: postern.InstancePending, LaunchTime: now, LastSeen: now,
		AgentKey: r.AgentKey, ActivationID: act.ID, Tags: append([]postern.Tag(nil), act.Tags...),
	}
	if act.DefaultInstanceName != "" && postern.TagValue(inst.Tags, "Name") == "" {
		inst.Tags = append(inst.Tags, postern.Tag{Key: "Name", Value: act.DefaultInstanceName})
	}
	f, err := a.facts(ctx, act.VPCID, r.Report, postern.InstancePending, now)
	if err != nil {
		return nil, err
	}
	applyFacts(inst, f)
	err = a.store.RegisterInstance(ctx, act.ID, now, inst)
	switch {
	case postern.IsKind(err, postern.KindConflict):
		return nil, postern.CodedErrorf(postern.KindConflict, "ExpiredActivation", "The activation has expired.")
	case postern.IsKind(err, postern.KindLimit):
		return nil, postern.CodedErrorf(postern.KindLimit, "RegistrationLimitExceeded", "The activation has reached its registration limit.")
	case err != nil:
		return nil, err
	}
	return inst, nil
}

func applyFacts(i *postern.Instance, f postern.InstanceFacts) {
	i.State, i.Hostname, i.Platform, i.OS = f.State, f.Hostname, f.Platform, f.OS
	i.PrivateIP, i.PublicIP, i.VPCID, i.SubnetID = f.PrivateIP, f.PublicIP, f.VPCID, f.SubnetID
	i.HostKeys, i.SSHPort, i.LastSeen = f.HostKeys, f.SSHPort, f.LastSeen
}

// facts turns an agent's report into stored facts, placing the instance
// in the subnet whose CIDR holds one of its private addresses (within
// vpcHint when set).
func (a *Authority) facts(ctx context.Context, vpcHint string, r agentproto.Report, state string, now time.Time) (postern.InstanceFacts, error) {
	f := postern.InstanceFacts{
		State: state, Hostname: truncate(r.Hostname, 255), Platform: truncate(r.Platform, 64), OS: truncate(r.OS, 128),
		SSHPort: r.SSHPort, LastSeen: now, VPCID: vpcHint,
	}
	if f.SSHPort <= 0 || f.SSHPort > 65535 {
		f.SSHPort = 22
	}
	for _, k := range r.HostKeys {
		if len(f.HostKeys) < 8 && len(k) < 2048 && strings.Count(k, " ") == 1 {
			f.HostKeys = append(f.HostKeys, k)
		}
	}
	if len(r.PublicIPs) > 0 {
		if ip, err := netip.ParseAddr(r.PublicIPs[0]); err == nil {
			f.PublicIP = ip.String()
		}
	}
	subnets, err := a.store.ListSubnets(ctx, nil)
	if err != nil {
		return f, err
	}
	for _, s := range r.PrivateIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if f.PrivateIP == "" {
			f.PrivateIP = ip.String()
		}
		for _, sn := range subnets {
			if vpcHint != "" && sn.VPCID != vpcHint {
				continue
			}
			if p, err := netip.ParsePrefix(sn.CIDR); err == nil && p.Contains(ip) {
				f.PrivateIP, f.SubnetID, f.VPCID = ip.String(), sn.ID, sn.VPCID
				return f, nil
			}
		}
	}
	return f, nil
}

// AgentKey returns the registered key of an instance whose agent may
// connect (any state but terminated).
func (a *Authority) AgentKey(ctx context.Context, instanceID string) (ed25519.PublicKey, error) {
	if err := checkIDs(instanceKind, []string{instanceID}); err != nil {
		return nil, err
	}
	inst, err := a.store.GetInstance(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	if inst.State == postern.InstanceTerminated {
		return nil, postern.Conflictf("instance %s is terminated", instanceID)
	}
	if len(inst.AgentKey) != ed25519.PublicKeySize {
		return nil, postern.Conflictf("instance %s has no registered agent", instanceID)
	}
	return ed25519.PublicKey(inst.AgentKey), nil
}

// AgentReported records an agent's report; the instance is running.
func (a *Authority) AgentReported(ctx context.Context, instanceID string, r agentproto.Report) error {
	inst, err := a.store.GetInstance(ctx, instanceID)
	if err != nil {
		return err
	}
	if inst.State == postern.InstanceTerminated {
		return errTerminated(instanceID)
	}
	vpc := ""
	if inst.ActivationID != "" {
		if act, err := a.store.GetActivation(ctx, inst.ActivationID); err == nil {
			vpc = act.VPCID
		}
	}
	f, err := a.facts(ctx, vpc, r, postern.InstanceRunning, a.now().UTC())
	if err != nil {
		return err
	}
	return a.store.UpdateInstanceFacts(ctx, instanceID, f)
}

// AgentHeartbeat notes that the agent is alive. A terminated instance
// stays terminated: its agent's heartbeat is refused (KindConflict).
func (a *Authority) AgentHeartbeat(ctx context.Context, instanceID string, at time.Time) error {
	inst, err := a.store.GetInstance(ctx, instanceID)
	if err != nil {
		return err
	}
	if inst.State == postern.InstanceTerminated {
		return errTerminated(instanceID)
	}
	return a.store.SetInstanceState(ctx, instanceID, postern.InstanceRunning, at.UTC())
}

// errTerminated refuses an agent of a deregistered instance.
func errTerminated(instanceID string) error {
	return postern.Conflictf("instance %s is terminated", instanceID)
}

// StopSilent marks instances whose agents fell silent before cutoff as
// stopped.
func (a *Authority) StopSilent(ctx context.Context, cutoff time.Time) ([]string, error) {
	return a.store.StopSilentInstances(ctx, cutoff)
}

// Deregister terminates an instance: its agent may no longer connect and
// no key can be pushed to it.
func (a *Authority) Deregister(ctx context.Context, instanceID string) error {
	if err := checkIDs(instanceKind, []string{instanceID}); err != nil {
		return err
	}
	return notFound(a.store.SetInstanceState(ctx, instanceID, postern.InstanceTerminated, time.Time{}), instanceKind)
}
