package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

// Store is the part of postern.Store that a Trail uses.
type Store interface {
	// AppendAudit assigns rec.Seq, rec.PrevHash and rec.Hash and stores
	// the record; concurrent appends form one chain.
	AppendAudit(ctx context.Context, rec *postern.AuditRecord) error
	// LookupAudit returns records matching q, newest first. A Trail asks
	// it for the newest record only.
	LookupAudit(ctx context.Context, q postern.AuditQuery) ([]postern.AuditRecord, error)
	// ScanAudit returns up to limit records with Seq >= from, in order.
	ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error)
	PutAuditDigest(ctx context.Context, d *postern.AuditDigest) error
	// ListAuditDigests returns digests with Seq >= from, oldest first.
	ListAuditDigests(ctx context.Context, from int64) ([]postern.AuditDigest, error)
}

var _ Store = postern.Store(nil)

// Trail records audit events and signs digests of the chain they form. The
// store holds the chain and the digests, so a restarted server, or several
// replicas sharing one store, work as one; what a Trail keeps in memory
// only sharpens the checks Digest makes. A Trail is safe for concurrent use.
type Trail struct {
	st    Store
	key   ed25519.PrivateKey
	pub   ed25519.PublicKey
	keyID string
	log   *slog.Logger
	now   func() time.Time // time.Now; a field so that tests can set the clock

	mu   sync.Mutex           // serializes Digest
	last *postern.AuditDigest // the newest digest (by time) known to be ours, or nil
	kept string               // where KeepNewestDigest keeps a copy, or ""

	amu      sync.Mutex // guards appended; never held during I/O
	appended struct {
		seq  int64
		hash []byte
	} // the newest record this Trail appended
}

// NewTrail returns a Trail that appends to st and signs digests with key.
// A nil logger discards. NewTrail panics when key is not an Ed25519
// private key: that is a bug in the caller, not a condition to handle.
func NewTrail(st Store, key ed25519.PrivateKey, logger *slog.Logger) *Trail {
	if len(key) != ed25519.PrivateKeySize {
		panic("audit: NewTrail needs an Ed25519 private key")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pub := key.Public().(ed25519.PublicKey)
	return &Trail{st: st, key: key, pub: pub, keyID: keyfile.KeyID(pub), log: logger, now: time.Now}
}

// PublicKey returns the key that verifies the Trail's digests.
func (t *Trail) PublicKey() ed25519.PublicKey { return t.pub }

// KeyID returns the id of the key that signs the Trail's digests, as it
// appears in each digest's KeyID.
func (t *Trail) KeyID() string { return t.keyID }

// Record completes ev (EventVersion, EventID and EventTime when they are
// empty; EventTime in UTC), redacts it, and appends it to the trail. The
// stored record is returned with its sequence number and hash.
//
// Secret-looking fields of RequestParameters, ResponseElements and
// AdditionalEventData are recorded as Redacted; ev's maps are not changed.
//
// An error is a postern KindInternal error: the caller must fail the
// request it was auditing, because a call never succeeds unaudited.
func (t *Trail) Record(ctx context.Context, ev *Event) (*postern.AuditRecord, error) {
	if ev.EventVersion == "" {
		ev.EventVersion = EventVersion
	}
	if ev.EventID == "" {
		id, err := newEventID()
		if err != nil {
			return nil, postern.Internal(err, "the audit trail could not be written")
		}
		ev.EventID = id
	}
	if ev.EventTime.IsZero() {
		ev.EventTime = t.now()
	}
	ev.EventTime = ev.EventTime.UTC()

	body, err := marshalEvent(ev)
	if err != nil {
		t.log.Error("audit event cannot be encoded", "event", ev.EventName, "requestId", ev.RequestID, "err", err)
		return nil, postern.Internal(err, "the audit trail could not be written")
	}
	rec := &postern.AuditRecord{
		EventID:     ev.EventID,
		EventTime:   ev.EventTime,
		EventName:   ev.EventName,
		EventSource: ev.EventSource,
		UserName:    ev.UserIdentity.UserName,
		AccessKeyID: ev.UserIdentity.AccessKeyID,
		ErrorCode:   ev.ErrorCode,
		Body:        body,
	}
	for _, r := range ev.Resources {
		if r.ARN != "" {
			rec.Resources = append(rec.Resources, r.ARN)
		}
	}
	if err := t.st.AppendAudit(ctx, rec); err != nil {
		t.log.Error("audit append failed", "event", ev.EventName, "eventId", ev.EventID, "requestId", ev.RequestID, "err", err)
		return nil, postern.Internal(err, "the audit trail could not be written")
	}
	t.amu.Lock()
	if rec.Seq > t.appended.seq {
		t.appended.seq, t.appended.hash = rec.Seq, bytes.Clone(rec.Hash)
	}
	t.amu.Unlock()
	return rec, nil
}

// marshalEvent returns the canonical JSON of ev with its secrets hidden.
// encoding/json is deterministic: struct fields in declaration order, map
// keys sorted.
func marshalEvent(ev *Event) ([]byte, error) {
	e := *ev // shallow: the maps are replaced, not changed
	var err error
	if e.RequestParameters, err = redactMap(ev.RequestParameters); err != nil {
		return nil, fmt.Errorf("requestParameters: %w", err)
	}
	if e.ResponseElements, err = redactMap(ev.ResponseElements); err != nil {
		return nil, fmt.Errorf("responseElements: %w", err)
	}
	if e.AdditionalEventData, err = redactMap(ev.AdditionalEventData); err != nil {
		return nil, fmt.Errorf("additionalEventData: %w", err)
	}
	return json.Marshal(&e)
}

// newEventID returns a random (version 4) UUID.
func newEventID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:]), nil
}
