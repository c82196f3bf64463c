package agent

import (
	"crypto/ed25519"
	"sync"
	"time"

	"github.com/postern-dev/postern/keyrecord"
)

// keyStore holds the key records pushed to this host, in memory only, until
// they expire. It accepts only records signed by the pinned key for this
// instance.
type keyStore struct {
	instanceID string
	ksk        ed25519.PublicKey
	now        func() time.Time

	mu       sync.Mutex
	byUser   map[string][]storedRecord
	prunedAt time.Time // when every user's records were last swept
}

// sweepEvery bounds how often add sweeps every user's records: a host
// receiving thousands of pushes a minute must not rescan them all each
// time. forUser always drops the asking user's expired records.
const sweepEvery = time.Second

type storedRecord struct {
	signed keyrecord.Signed
	rec    keyrecord.Record
}

func newKeyStore(instanceID string, ksk ed25519.PublicKey, now func() time.Time) *keyStore {
	return &keyStore{instanceID: instanceID, ksk: ksk, now: now, byUser: map[string][]storedRecord{}}
}

// add verifies a pushed record and keeps it. Its error is what the agent
// acknowledges to the server.
func (k *keyStore) add(s keyrecord.Signed) (keyrecord.Record, error) {
	rec, err := s.Verify(k.ksk)
	if err != nil {
		return rec, err
	}
	if err := rec.Check(k.instanceID, rec.OSUser, "", k.now()); err != nil {
		return rec, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := k.now(); now.Sub(k.prunedAt) >= sweepEvery {
		k.pruneLocked()
		k.prunedAt = now
	}
	k.byUser[rec.OSUser] = append(k.byUser[rec.OSUser], storedRecord{s, rec})
	return rec, nil
}

// forUser returns the live records for an OS user.
func (k *keyStore) forUser(user string) []keyrecord.Signed {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	live := k.byUser[user][:0]
	var out []keyrecord.Signed
	for _, r := range k.byUser[user] {
		if now.Before(r.rec.ExpiresAt) {
			live = append(live, r)
			out = append(out, r.signed)
		}
	}
	if len(live) == 0 {
		delete(k.byUser, user)
	} else {
		k.byUser[user] = live
	}
	return out
}

// pruneLocked drops expired records so that memory holds nothing stale.
func (k *keyStore) pruneLocked() {
	now := k.now()
	for user, rs := range k.byUser {
		live := rs[:0]
		for _, r := range rs {
			if now.Before(r.rec.ExpiresAt) {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			delete(k.byUser, user)
		} else {
			k.byUser[user] = live
		}
	}
}

// size is the number of live records (for tests and metrics).
func (k *keyStore) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pruneLocked()
	n := 0
	for _, rs := range k.byUser {
		n += len(rs)
	}
	return n
}
