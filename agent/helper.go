package agent

import (
	"time"

	"github.com/postern-dev/postern/authkeys"
)

// The sshd helper itself lives in the dependency-light package authkeys,
// shared by `postern authorized-keys` and postern-authorized-keys; these
// names keep agent's API.

// AuthorizedKey is one key line the sshd helper prints, with the record
// that allowed it (for the log).
type AuthorizedKey = authkeys.AuthorizedKey

// Rejected explains why a record the agent offered was not honoured.
type Rejected = authkeys.Rejected

// AuthorizedKeys asks the agent for user's records and returns the key
// lines sshd may accept (see authkeys.AuthorizedKeys).
func AuthorizedKeys(cfg HelperConfig, user, fingerprint string, now time.Time, timeout time.Duration) ([]AuthorizedKey, []Rejected, error) {
	return authkeys.AuthorizedKeys(cfg, user, fingerprint, now, timeout)
}
