package authkeys

import (
	"fmt"
	"strings"
	"time"

	"github.com/postern-dev/postern/keyrecord"
)

// AuthorizedKey is one key line the helper prints, with the record that
// allowed it (for the log).
type AuthorizedKey struct {
	Line   string // `expiry-time="…Z" type base64`
	Record keyrecord.Record
}

// Rejected explains why a record the agent offered was not honoured.
type Rejected struct {
	Reason string
}

// AuthorizedKeys asks the agent for user's records and returns the key
// lines sshd may accept: each record's signature verifies under the pinned
// key, it names this instance and this user, it has not expired, its key
// is a well-formed line that matches its fingerprint, and — when sshd passed one —
// fingerprint matches. Anything in doubt is left out; an error means
// nothing may be printed.
func AuthorizedKeys(cfg Config, user, fingerprint string, now time.Time, timeout time.Duration) ([]AuthorizedKey, []Rejected, error) {
	signed, err := Query(cfg.Socket, user, timeout)
	if err != nil {
		return nil, nil, fmt.Errorf("agent unavailable: %w", err)
	}
	var out []AuthorizedKey
	var rejected []Rejected
	for _, s := range signed {
		// The agent answers with all of the user's records: those that
		// could not apply anyway (another key, expired) are dropped on
		// their claims, so that a login pays for one signature check.
		rec, err := s.Claims()
		if err == nil {
			err = rec.Check(cfg.InstanceID, user, fingerprint, now)
		}
		if err == nil {
			err = s.CheckSignature(cfg.KeySigningKey)
		}
		if err == nil {
			rec.Key, err = checkKeyLine(rec.Key, rec.Fingerprint)
		}
		if err != nil {
			rejected = append(rejected, Rejected{Reason: err.Error()})
			continue
		}
		// OpenSSH refuses the key itself past expiry-time: a second guard
		// should the helper's answer be cached or replayed.
		opt := `expiry-time="` + rec.ExpiresAt.UTC().Format("20060102150405") + `Z"`
		out = append(out, AuthorizedKey{Line: opt + " " + strings.TrimSpace(rec.Key), Record: rec})
	}
	return out, rejected, nil
}
