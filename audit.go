package postern

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// AuditRecord is one stored entry of the audit trail. Body holds the
// CloudTrail-shaped event exactly as it was hashed; the other fields are
// copies kept for lookups. Records form a chain: each Hash covers the
// previous record's Hash, the record's sequence number and its Body.
type AuditRecord struct {
	Seq         int64 // 1, 2, 3, … with no gaps
	EventID     string
	EventTime   time.Time
	EventName   string
	EventSource string
	UserName    string
	AccessKeyID string
	ErrorCode   string
	Resources   []string // ARNs or ids the event touched
	Body        []byte   // canonical JSON of the event
	PrevHash    []byte   // Hash of record Seq-1; 32 zero bytes for Seq 1
	Hash        []byte   // ChainHash(PrevHash, Seq, Body)
	// Stored is set by a store's ScanAudit: the columns above, from
	// EventTime to Resources, are as the store holds them, empty ones
	// included, and Indexed lists those of Resources that the store's
	// resource index holds for the record. Lookups search those columns
	// and that index, so the verifier holds them to the body. Appends
	// ignore both; records read from elsewhere may come without them.
	Stored  bool
	Indexed []string
}

// GenesisHash is the PrevHash of the first record.
var GenesisHash = make([]byte, sha256.Size)

// ChainHash is the rule that links audit records. Stores apply it when they
// append; package audit applies it again when it verifies.
func ChainHash(prev []byte, seq int64, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte("postern-audit-v1\n"))
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(seq))
	h.Write(n[:])
	h.Write(body)
	return h.Sum(nil)
}

// AuditDigest is a signed statement by the server that the chain up to and
// including record Seq ended in Hash at Time. Signature is Ed25519 over the
// message package audit builds from these fields.
type AuditDigest struct {
	Seq       int64
	Hash      []byte
	Time      time.Time
	KeyID     string // fingerprint of the signing public key
	Signature []byte
}

// AuditQuery selects records for a lookup. Zero fields do not filter.
// Results come newest first; BeforeSeq pages backwards.
type AuditQuery struct {
	EventName  string
	UserName   string
	Resource   string
	Start, End time.Time
	ErrorsOnly bool
	BeforeSeq  int64 // only records with Seq < BeforeSeq (0: no bound)
	Limit      int   // 0: store default (50)
}
