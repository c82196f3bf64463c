package postern

import (
	"context"
	"time"
)

// TagSelector names a tag to delete. A nil Value deletes the key whatever its
// value; a non-nil Value deletes it only when the value matches.
type TagSelector struct {
	Key   string
	Value *string
}

// Store is the persistent state of a Postern control plane. Implementations
// live in store/sqlite and store/postgres and pass store/storetest.
//
// Errors are *Error values: KindNotFound when a named thing does not exist,
// KindExists for duplicates, KindConflict when a delete would orphan
// something (IAM's DeleteConflict). Every method is safe for concurrent use.
type Store interface {
	// Meta is a small key/value table for settings shared by all replicas,
	// such as the account id. PutMetaIfAbsent stores value unless key is
	// set, and returns the value that is stored afterwards.
	GetMeta(ctx context.Context, key string) (string, error)
	PutMetaIfAbsent(ctx context.Context, key, value string) (string, error)

	CreateUser(ctx context.Context, u *User) error
	GetUser(ctx context.Context, name string) (*User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser refuses (KindConflict) while the user has access keys,
	// inline policies, group memberships, a login profile or an MFA device;
	// it ends the user's console sessions.
	DeleteUser(ctx context.Context, name string) error

	// CreateAccessKey fails with KindNotFound when the user does not exist.
	CreateAccessKey(ctx context.Context, k *AccessKey) error
	GetAccessKey(ctx context.Context, id string) (*AccessKey, error)
	ListAccessKeys(ctx context.Context, userName string) ([]AccessKey, error)
	UpdateAccessKeyStatus(ctx context.Context, id string, status AccessKeyStatus) error
	DeleteAccessKey(ctx context.Context, id string) error

	CreateGroup(ctx context.Context, g *Group) error
	GetGroup(ctx context.Context, name string) (*Group, error)
	ListGroups(ctx context.Context) ([]Group, error)
	// DeleteGroup refuses (KindConflict) while the group has members or
	// inline policies.
	DeleteGroup(ctx context.Context, name string) error
	AddUserToGroup(ctx context.Context, group, user string) error
	RemoveUserFromGroup(ctx context.Context, group, user string) error
	ListGroupsForUser(ctx context.Context, user string) ([]Group, error)
	ListGroupMembers(ctx context.Context, group string) ([]User, error)

	// PutPolicy creates or replaces an inline policy; the owner must exist.
	PutPolicy(ctx context.Context, p *InlinePolicy) error
	GetPolicy(ctx context.Context, kind PolicyOwnerKind, owner, name string) (*InlinePolicy, error)
	ListPolicies(ctx context.Context, kind PolicyOwnerKind, owner string) ([]InlinePolicy, error)
	DeletePolicy(ctx context.Context, kind PolicyOwnerKind, owner, name string) error
	// PoliciesForUser returns the user's inline policies and those of every
	// group the user belongs to, in one call (it is on every request's path).
	PoliciesForUser(ctx context.Context, user string) ([]InlinePolicy, error)

	// Console sign-in. A user has at most one login profile. Every call
	// that changes a user's password or MFA (CreateLoginProfile included)
	// ends all of the user's console sessions in the same transaction.
	// CreateLoginProfile is KindNotFound for an unknown user and KindExists
	// when the user has one; Update and Delete are KindNotFound without.
	CreateLoginProfile(ctx context.Context, p *LoginProfile) error
	GetLoginProfile(ctx context.Context, user string) (*LoginProfile, error)
	UpdateLoginProfile(ctx context.Context, p *LoginProfile) error
	DeleteLoginProfile(ctx context.Context, user string) error

	// CreateMFADevice stores an unassigned virtual MFA device (KindExists
	// when the serial number is taken).
	CreateMFADevice(ctx context.Context, d *MFADevice) error
	GetMFADevice(ctx context.Context, serial string) (*MFADevice, error)
	// ListMFADevices returns the devices assigned to user, by serial.
	ListMFADevices(ctx context.Context, user string) ([]MFADevice, error)
	// EnableMFADevice assigns an unassigned device to an existing user
	// and records step as used. A device that is assigned already, or a
	// user who has one, is KindConflict.
	EnableMFADevice(ctx context.Context, serial, user string, at time.Time, step int64) error
	// DeactivateMFADevice unassigns a device from user (KindNotFound
	// when it is not assigned to that user).
	DeactivateMFADevice(ctx context.Context, serial, user string) error
	// DeleteMFADevice deletes an unassigned device; an assigned one is
	// KindConflict.
	DeleteMFADevice(ctx context.Context, serial string) error
	// UseMFAStep records step as the device's newest used step, atomically,
	// unless it is not newer than the one recorded (KindConflict): a code
	// is good once.
	UseMFAStep(ctx context.Context, serial string, step int64) error

	// CreateConsoleSession stores a new session of an existing user and
	// deletes the user's sessions that have expired.
	CreateConsoleSession(ctx context.Context, s *ConsoleSession) error
	// TouchConsoleSession returns the session with idHash as it was and
	// sets its LastSeen to now, unless it has expired (ExpiresAt not after
	// now) or been idle since before idleCutoff: then it is deleted and
	// the answer is KindNotFound, as for an unknown id.
	TouchConsoleSession(ctx context.Context, idHash []byte, now, idleCutoff time.Time) (*ConsoleSession, error)
	// DeleteConsoleSession ends a session; an unknown id is not an error.
	DeleteConsoleSession(ctx context.Context, idHash []byte) error

	// SignInFailures returns the failed console sign-ins counted under
	// keys ("user:NAME", "ip:ADDR") whose last failure is at or after
	// since; keys with none are absent. Every replica sees the same counts.
	SignInFailures(ctx context.Context, keys []string, since time.Time) (map[string]SignInFailure, error)
	// ReserveSignInAttempt counts an attempt about to be checked as one
	// failure at at under each key, provided each key's count is below its
	// limit (limits[i] for keys[i]); it reports whether it counted, and
	// when not it changes nothing. A key whose last failure is before
	// since starts again from zero; such counts are forgotten. Counting
	// before the check means concurrent attempts cannot all pass a limit
	// that none of them has reached yet.
	ReserveSignInAttempt(ctx context.Context, keys []string, limits []int, at, since time.Time) (bool, error)
	// ReleaseSignInAttempt takes back one counted failure under each key,
	// for an attempt that proved to be no failure.
	ReleaseSignInAttempt(ctx context.Context, keys []string) error
	// ResetSignInFailures forgets the failures counted under key.
	ResetSignInFailures(ctx context.Context, key string) error

	// CreateRecording indexes a new session recording (KindExists when
	// the id is taken). The user need not exist: recordings outlive users.
	CreateRecording(ctx context.Context, r *Recording) error
	// FinishRecording records how a recording ended; an unknown id is
	// KindNotFound, one finished already KindConflict.
	FinishRecording(ctx context.Context, id string, end RecordingEnd) error
	GetRecording(ctx context.Context, id string) (*Recording, error)
	// ListRecordings returns recordings matching f, newest first, and the
	// token of the next page ("" after the last); a token that is not
	// one ListRecordings returned is KindInvalid.
	ListRecordings(ctx context.Context, f RecordingFilter) ([]Recording, string, error)

	CreateVPC(ctx context.Context, v *VPC) error
	GetVPC(ctx context.Context, id string) (*VPC, error)
	// ListVPCs returns the VPCs with the given ids (all when ids is empty);
	// an unknown id is KindNotFound.
	ListVPCs(ctx context.Context, ids []string) ([]VPC, error)
	// DeleteVPC refuses (KindConflict) while the VPC has subnets.
	DeleteVPC(ctx context.Context, id string) error

	// CreateSubnet fails with KindNotFound when the VPC does not exist.
	CreateSubnet(ctx context.Context, s *Subnet) error
	GetSubnet(ctx context.Context, id string) (*Subnet, error)
	ListSubnets(ctx context.Context, ids []string) ([]Subnet, error)
	// DeleteSubnet refuses (KindConflict) while instances that are not
	// terminated are placed in it, or while it holds a live endpoint.
	DeleteSubnet(ctx context.Context, id string) error

	// PutInstance creates or replaces an instance (tags included).
	PutInstance(ctx context.Context, i *Instance) error
	GetInstance(ctx context.Context, id string) (*Instance, error)
	ListInstances(ctx context.Context, ids []string) ([]Instance, error)

	// UpdateInstanceFacts records what the agent reports (state, addresses,
	// host keys, last seen) without touching tags or launch time.
	// Terminated is final: updating a terminated instance is KindConflict,
	// for this and SetInstanceState (except to terminate it again).
	UpdateInstanceFacts(ctx context.Context, id string, f InstanceFacts) error
	// SetInstanceState sets an instance's state and, when lastSeen is not
	// zero, its last-seen time.
	SetInstanceState(ctx context.Context, id, state string, lastSeen time.Time) error
	// StopSilentInstances marks running or pending instances whose agents
	// were last seen before cutoff as stopped, and returns their ids.
	StopSilentInstances(ctx context.Context, cutoff time.Time) ([]string, error)

	// CreateEndpoint stores a new endpoint with its tags. The subnet must
	// exist (KindNotFound); a subnet holds at most one live endpoint
	// (KindConflict naming the one it has); a ClientToken already used is
	// KindExists naming the token.
	CreateEndpoint(ctx context.Context, e *Endpoint) error
	GetEndpoint(ctx context.Context, id string) (*Endpoint, error)
	// ListEndpoints returns the endpoints with the given ids (all when ids
	// is empty), deleted ones included, by id; an unknown id is
	// KindNotFound.
	ListEndpoints(ctx context.Context, ids []string) ([]Endpoint, error)
	// UpdateEndpointSettings replaces an endpoint's settings; an endpoint
	// that is being deleted or deleted is KindConflict.
	UpdateEndpointSettings(ctx context.Context, id string, s EndpointSettings) error
	// JoinEndpoint records that the endpoint's process joined at when:
	// the first join moves create-in-progress to create-complete and sets
	// JoinedAt; dnsName, when not empty, replaces DNSName and FIPSDNSName.
	// An endpoint that is being deleted or deleted is KindConflict.
	JoinEndpoint(ctx context.Context, id, dnsName string, when time.Time) error
	// DeleteEndpoint starts deleting an endpoint and returns it as it is
	// afterwards: one that ever joined goes to delete-in-progress (its
	// process closes its tunnels, then calls CompleteEndpointDeletion),
	// one that never did straight to delete-complete. Either way the
	// subnet is free for a new endpoint. Deleting again is KindConflict.
	DeleteEndpoint(ctx context.Context, id string) (*Endpoint, error)
	// CompleteEndpointDeletion moves delete-in-progress to
	// delete-complete; from any other state it is KindConflict.
	CompleteEndpointDeletion(ctx context.Context, id string) error

	// TouchEndpointProcess records that an endpoint's process was heard
	// from at when.
	TouchEndpointProcess(ctx context.Context, endpointID, processID string, at time.Time) error
	// OpenTunnel records a live tunnel unless its endpoint already carries
	// max tunnels (KindLimit), counting only tunnels whose processes were
	// heard from at or after staleBefore; the others are forgotten. Every
	// process of an endpoint shares the one count, atomically. A tunnel id
	// already recorded is KindExists. The process opening the tunnel
	// counts as heard from at t.OpenedAt.
	OpenTunnel(ctx context.Context, t *LiveTunnel, max int, staleBefore time.Time) error
	// CloseTunnel forgets a live tunnel and returns it (KindNotFound when
	// it is not recorded, or was forgotten).
	CloseTunnel(ctx context.Context, id string) (*LiveTunnel, error)
	// LiveEndpointProcesses returns how many processes of the endpoint
	// were heard from at or after since.
	LiveEndpointProcesses(ctx context.Context, endpointID string, since time.Time) (int, error)
	// CountTunnels returns how many live tunnels each endpoint carries,
	// counted as OpenTunnel counts them; endpoints without any are absent.
	CountTunnels(ctx context.Context, staleBefore time.Time) (map[string]int, error)

	CreateActivation(ctx context.Context, a *Activation) error
	GetActivation(ctx context.Context, id string) (*Activation, error)
	ListActivations(ctx context.Context) ([]Activation, error)
	DeleteActivation(ctx context.Context, id string) error
	// RegisterInstance stores inst as registered through activation id and
	// counts the registration, atomically: an unknown activation is
	// KindNotFound, an expired one KindConflict, one whose limit is
	// reached KindLimit, and none of these changes anything.
	RegisterInstance(ctx context.Context, activationID string, now time.Time, inst *Instance) error

	// CreateTags adds or overwrites tags on each resource (vpc-, subnet-,
	// i- or eice- id); every resource must exist or nothing changes.
	CreateTags(ctx context.Context, resourceIDs []string, tags []Tag) error
	DeleteTags(ctx context.Context, resourceIDs []string, tags []TagSelector) error

	// AppendAudit assigns rec.Seq, rec.PrevHash and rec.Hash (ChainHash) and
	// stores the record atomically: concurrent appends form one chain.
	AppendAudit(ctx context.Context, rec *AuditRecord) error
	// LookupAudit returns records matching q, newest first.
	LookupAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error)
	// ScanAudit returns up to limit records with Seq >= from, in order.
	ScanAudit(ctx context.Context, from int64, limit int) ([]AuditRecord, error)
	PutAuditDigest(ctx context.Context, d *AuditDigest) error
	// ListAuditDigests returns digests with Seq >= from, oldest first.
	ListAuditDigests(ctx context.Context, from int64) ([]AuditDigest, error)

	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error
	Close() error
}
