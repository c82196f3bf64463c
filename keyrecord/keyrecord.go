// Package keyrecord defines the signed statement that lets one public key
// log in as one user on one instance until an expiry. The server signs
// records with its key-signing key; the agent and the sshd helper verify
// them against the public key pinned at registration, so that neither the
// transport nor the agent's memory has to be trusted.
package keyrecord

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Record says: Key may log in as OSUser on InstanceID until ExpiresAt,
// because Caller asked in request RequestID.
type Record struct {
	InstanceID  string    `json:"instanceId"`
	OSUser      string    `json:"osUser"`
	Key         string    `json:"key"`         // "type base64", no options or comment
	Fingerprint string    `json:"fingerprint"` // SHA256:…
	RequestID   string    `json:"requestId"`
	Caller      string    `json:"caller"` // ARN of the user who pushed it
	IssuedAt    time.Time `json:"issuedAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// Signed is a record as it travels: the exact bytes that were signed and
// the Ed25519 signature over them.
type Signed struct {
	Payload   []byte `json:"payload"`
	Signature []byte `json:"signature"`
}

// domain separates these signatures from any other use of the key.
const domain = "postern-key-record-v1\n"

func message(payload []byte) []byte {
	return append([]byte(domain), payload...)
}

// Sign encodes and signs r.
func Sign(r Record, key ed25519.PrivateKey) (Signed, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Payload: payload, Signature: ed25519.Sign(key, message(payload))}, nil
}

// Errors of Verify and Check; each says why a record is not honoured.
var (
	ErrSignature = errors.New("signature does not verify")
	ErrInstance  = errors.New("record is for another instance")
	ErrUser      = errors.New("record is for another user")
	ErrExpired   = errors.New("record has expired")
	ErrNotYet    = errors.New("record is not valid yet")
	ErrKey       = errors.New("record is for another key")
)

// Verify checks the signature with the pinned public key and decodes the
// record. It does not check what the record is for; see Check.
func (s Signed) Verify(pub ed25519.PublicKey) (Record, error) {
	if err := s.CheckSignature(pub); err != nil {
		return Record{}, err
	}
	return s.Claims()
}

// CheckSignature checks the signature over the payload with the pinned
// public key. What Claims decoded from the same Signed is the record's
// once this holds.
func (s Signed) CheckSignature(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, message(s.Payload), s.Signature) {
		return ErrSignature
	}
	return nil
}

// Claims decodes the record without checking its signature: what it says
// of itself, which only CheckSignature (or Verify) makes true. A reader may
// reject a record on its claims (Check failing) before paying for the
// signature check; it may accept one only once the signature holds.
func (s Signed) Claims() (Record, error) {
	var r Record
	if err := json.Unmarshal(s.Payload, &r); err != nil {
		return r, fmt.Errorf("signed record does not decode: %w", err)
	}
	return r, nil
}

// MaxClockSkew tolerates a host clock slightly behind the server's.
const MaxClockSkew = 5 * time.Minute

// Check reports whether r lets a key log in as user on instance at now.
// fingerprint, when not empty, must match too (sshd's %f).
func (r Record) Check(instance, user, fingerprint string, now time.Time) error {
	switch {
	case r.InstanceID != instance:
		return ErrInstance
	case r.OSUser != user:
		return ErrUser
	case fingerprint != "" && r.Fingerprint != fingerprint:
		return ErrKey
	case !now.Before(r.ExpiresAt):
		return ErrExpired
	case now.Add(MaxClockSkew).Before(r.IssuedAt):
		return ErrNotYet
	}
	return nil
}
