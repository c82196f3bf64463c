package postern

import "time"

// Activation lets agents register hosts as instances, the way Systems
// Manager's hybrid activations do. The code itself is shown once and kept
// only as a hash.
type Activation struct {
	ID                  string // 8-4-4-4-12 hex, like SSM
	CodeHash            []byte // SHA-256 of the activation code
	Description         string
	DefaultInstanceName string // Name tag of instances it registers
	RegistrationLimit   int
	RegistrationCount   int
	ExpiresAt           time.Time
	VPCID               string // instances join this VPC ("" = by address)
	Tags                []Tag  // copied onto every instance it registers
	CreatedAt           time.Time
	CreatedBy           string // ARN
}

// InstanceFacts is what an agent reports about its host; the store
// updates these fields without touching tags or launch time.
type InstanceFacts struct {
	State     string
	Hostname  string
	Platform  string
	OS        string
	PrivateIP string
	PublicIP  string
	VPCID     string
	SubnetID  string
	HostKeys  []string
	SSHPort   int
	LastSeen  time.Time
}
