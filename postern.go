// Package postern holds the domain types and interfaces shared by every part
// of Postern, a self-hosted EC2 Instance Connect. It depends on nothing but
// the standard library; each external system lives in a subpackage.
package postern

import (
	"time"
)

// User is an IAM user. Its ARN is derived from the account and name.
type User struct {
	Name      string
	ID        string // AIDA… unique id
	CreatedAt time.Time
}

// AccessKeyStatus is Active or Inactive.
type AccessKeyStatus string

// Access key states, as IAM spells them.
const (
	AccessKeyActive   AccessKeyStatus = "Active"
	AccessKeyInactive AccessKeyStatus = "Inactive"
)

// AccessKey is a long-lived credential of a user. The secret is stored only
// sealed (encrypted with the server's data key); see package seal.
type AccessKey struct {
	ID           string // AKIA…
	UserName     string
	SealedSecret []byte
	Status       AccessKeyStatus
	CreatedAt    time.Time
}

// Group is an IAM group; its members receive its inline policies.
type Group struct {
	Name      string
	ID        string // AGPA…
	CreatedAt time.Time
}

// PolicyOwnerKind says whether an inline policy belongs to a user or a group.
type PolicyOwnerKind string

// Policy owner kinds.
const (
	PolicyOwnerUser  PolicyOwnerKind = "user"
	PolicyOwnerGroup PolicyOwnerKind = "group"
)

// InlinePolicy is a named IAM policy document embedded in a user or group.
type InlinePolicy struct {
	OwnerKind PolicyOwnerKind
	OwnerName string
	Name      string
	Document  string // JSON, as validated and stored
}

// Tag is a key/value label on a resource.
type Tag struct {
	Key   string
	Value string
}

// VPC is an administrator-declared network. CIDR is an IPv4 or IPv6 prefix.
type VPC struct {
	ID        string // vpc-…
	CIDR      string
	State     string // "available"
	Tags      []Tag
	CreatedAt time.Time
}

// Subnet is a prefix inside a VPC. Instances are placed in the subnet whose
// CIDR holds their private address.
type Subnet struct {
	ID               string // subnet-…
	VPCID            string
	CIDR             string
	AvailabilityZone string
	State            string // "available"
	Tags             []Tag
	CreatedAt        time.Time
}

// Instance states, as EC2 spells them.
const (
	InstancePending    = "pending"
	InstanceRunning    = "running"
	InstanceStopped    = "stopped"
	InstanceTerminated = "terminated"
)

// Instance is a managed server, registered by its agent.
type Instance struct {
	ID         string // i- followed by 17 hex digits
	State      string
	Hostname   string
	Platform   string // e.g. "Linux/UNIX"
	PrivateIP  string
	PublicIP   string
	VPCID      string
	SubnetID   string
	Tags       []Tag
	LaunchTime time.Time
	LastSeen   time.Time

	// Set by the agent: its Ed25519 public key (its identity), the
	// activation it registered with, and what it reports.
	AgentKey     []byte
	ActivationID string
	OS           string   // e.g. "Debian GNU/Linux 12 (bookworm)"
	HostKeys     []string // sshd host keys, "type base64"
	SSHPort      int
}

// Name returns the value of the instance's Name tag, or "".
func (i *Instance) Name() string { return TagValue(i.Tags, "Name") }

// TagValue returns the value of key in tags, or "".
func TagValue(tags []Tag, key string) string {
	for _, t := range tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

// Filter is one EC2 filter: a name and the values any of which may match
// (with * and ? wildcards). Filters combine with AND.
type Filter struct {
	Name   string
	Values []string
}
