package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

// Store is what the trail needs from a postern.Store.
type Store interface {
	AppendAudit(ctx context.Context, rec *postern.AuditRecord) error
	ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error)
	PutAuditDigest(ctx context.Context, d *postern.AuditDigest) error
	ListAuditDigests(ctx context.Context, from int64) ([]postern.AuditDigest, error)
}

// Trail writes events and signs digests.
type Trail struct {
	store Store
	key   ed25519.PrivateKey
	keyID string
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	lastSeq  int64 // highest seq this trail appended
	lastHash []byte
	signed   int64 // highest seq covered by a digest this trail signed
}

// NewTrail returns a trail that appends to st and signs digests with key.
func NewTrail(st Store, key ed25519.PrivateKey, logger *slog.Logger) *Trail {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Trail{store: st, key: key, keyID: keyfile.KeyID(key.Public().(ed25519.PublicKey)), log: logger, now: time.Now}
}

// PublicKey returns the digest-signing public key.
func (t *Trail) PublicKey() ed25519.PublicKey { return t.key.Public().(ed25519.PublicKey) }

// Redacted replaces the value of fields whose names look secret.
const Redacted = "HIDDEN_DUE_TO_SECURITY_REASONS"

// secretWords are the field-name fragments that mark a secret.
var secretWords = []string{"secret", "password", "privatekey", "private_key", "sessiontoken", "session_token",
	"activationcode", "activation_code", "signature", "authorization", "passphrase", "totp"}

func secretName(k string) bool {
	k = strings.ToLower(k)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// redact returns a copy of v with secret-looking fields hidden.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if secretName(k) {
				out[k] = Redacted
			} else {
				out[k] = redact(val)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redact(val)
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redact(val)
		}
		return out
	}
	return v
}

func redactMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return redact(m).(map[string]any)
}

// Record completes ev (version, id, time), hides secret-looking fields,
// and appends it to the chain. An error means the event was not stored:
// the caller must fail the call it describes.
func (t *Trail) Record(ctx context.Context, ev *Event) (*postern.AuditRecord, error) {
	if ev.EventVersion == "" {
		ev.EventVersion = EventVersion
	}
	if ev.EventID == "" {
		ev.EventID = newUUID()
	}
	if ev.EventTime.IsZero() {
		ev.EventTime = t.now()
	}
	ev.EventTime = ev.EventTime.UTC()
	ev.RequestParameters = redactMap(ev.RequestParameters)
	ev.ResponseElements = redactMap(ev.ResponseElements)
	ev.AdditionalEventData = redactMap(ev.AdditionalEventData)
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, postern.Internal(err, "cannot encode the audit event")
	}
	rec := &postern.AuditRecord{
		EventID: ev.EventID, EventTime: ev.EventTime, EventName: ev.EventName, EventSource: ev.EventSource,
		UserName: ev.UserIdentity.UserName, AccessKeyID: ev.UserIdentity.AccessKeyID, ErrorCode: ev.ErrorCode, Body: body,
	}
	for _, r := range ev.Resources {
		rec.Resources = append(rec.Resources, r.ARN)
	}
	if err := t.store.AppendAudit(ctx, rec); err != nil {
		return nil, postern.Internal(err, "cannot store the audit record")
	}
	t.mu.Lock()
	if rec.Seq > t.lastSeq {
		t.lastSeq, t.lastHash = rec.Seq, rec.Hash
	}
	t.mu.Unlock()
	return rec, nil
}

// DigestMessage is the exact byte string a digest's signature covers.
func DigestMessage(d postern.AuditDigest) []byte {
	m := []byte("postern-audit-digest-v1\n")
	m = binary.BigEndian.AppendUint64(m, uint64(d.Seq))
	m = append(m, d.Hash...)
	m = binary.BigEndian.AppendUint64(m, uint64(d.Time.UnixNano()))
	return append(m, d.KeyID...)
}

// Digest signs the latest record this trail knows of, unless a digest
// already covers it (then it returns nil, nil). On a fresh start it reads
// the chain's tail from the store.
func (t *Trail) Digest(ctx context.Context) (*postern.AuditDigest, error) {
	t.mu.Lock()
	seq, hash, signed := t.lastSeq, t.lastHash, t.signed
	t.mu.Unlock()
	if seq == 0 {
		var err error
		if seq, hash, err = t.tail(ctx); err != nil || seq == 0 {
			return nil, err
		}
	}
	if signed == 0 {
		ds, err := t.store.ListAuditDigests(ctx, 0)
		if err != nil {
			return nil, err
		}
		if len(ds) > 0 {
			signed = ds[len(ds)-1].Seq
		}
	}
	if seq <= signed {
		return nil, nil
	}
	d := &postern.AuditDigest{Seq: seq, Hash: hash, Time: t.now().UTC(), KeyID: t.keyID}
	d.Signature = ed25519.Sign(t.key, DigestMessage(*d))
	if err := t.store.PutAuditDigest(ctx, d); err != nil {
		return nil, err
	}
	t.mu.Lock()
	if seq > t.signed {
		t.signed = seq
	}
	t.mu.Unlock()
	return d, nil
}

// tail finds the last record of the chain by scanning from the newest
// digest onwards.
func (t *Trail) tail(ctx context.Context) (int64, []byte, error) {
	from := int64(1)
	ds, err := t.store.ListAuditDigests(ctx, 0)
	if err != nil {
		return 0, nil, err
	}
	if len(ds) > 0 {
		from = ds[len(ds)-1].Seq
	}
	var seq int64
	var hash []byte
	for {
		recs, err := t.store.ScanAudit(ctx, from, 1000)
		if err != nil {
			return 0, nil, err
		}
		if len(recs) == 0 {
			return seq, hash, nil
		}
		last := recs[len(recs)-1]
		seq, hash, from = last.Seq, last.Hash, last.Seq+1
	}
}

// RunDigests signs a digest every interval until ctx is done, and a final
// one then.
func (t *Trail) RunDigests(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, err := t.Digest(fctx); err != nil {
				t.log.Error("final audit digest failed", "err", err)
			}
			cancel()
			return
		case <-tick.C:
			if _, err := t.Digest(ctx); err != nil {
				t.log.Error("audit digest failed", "err", err)
			}
		}
	}
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}
