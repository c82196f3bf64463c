package client

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

// The JSON services the SDK modules in go.mod have no client for.
const (
	// CloudTrail's LookupEvents, which Postern serves over its trail.
	CloudTrailTarget      = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"
	CloudTrailSigningName = "cloudtrail"

	// Postern's own service: the raw hash-chained trail and its digests.
	PosternTarget      = "Postern_20261101"
	PosternSigningName = "postern"
)

// LookupAttribute is one CloudTrail lookup filter. Postern knows the keys
// EventName, Username and ResourceName.
type LookupAttribute struct {
	AttributeKey   string
	AttributeValue string
}

// LookupEventsInput is CloudTrail's LookupEvents request.
type LookupEventsInput struct {
	LookupAttributes []LookupAttribute `json:",omitempty"`
	StartTime        *EpochTime        `json:",omitempty"`
	EndTime          *EpochTime        `json:",omitempty"`
	MaxResults       int               `json:",omitempty"`
	NextToken        string            `json:",omitempty"`
	// ErrorsOnly is a Postern extension: only calls that failed. It is
	// left out when false so that the request stays valid for CloudTrail.
	ErrorsOnly bool `json:",omitempty"`
}

// EpochTime is an AWS JSON timestamp: fractional seconds since the epoch
// on the wire.
type EpochTime struct{ time.Time }

// MarshalJSON encodes t as seconds since the epoch, to the millisecond.
func (t EpochTime) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)), nil
}

// UnmarshalJSON accepts seconds since the epoch or an RFC 3339 string.
func (t *EpochTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		tt, err := time.Parse(time.RFC3339Nano, s)
		t.Time = tt
		return err
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("timestamp %s is neither epoch seconds nor RFC 3339", b)
	}
	sec, frac := math.Modf(f)
	t.Time = time.Unix(int64(sec), int64(math.Round(frac*1e3))*1e6).UTC()
	return nil
}

// Resource is one resource of a looked-up event.
type Resource struct {
	ResourceType string `json:",omitempty"`
	ResourceName string
}

// Event is one event of LookupEvents. CloudTrailEvent is the full record,
// a JSON document in a string as CloudTrail sends it.
type Event struct {
	EventID         string `json:"EventId"`
	EventName       string
	ReadOnly        string
	AccessKeyID     string `json:"AccessKeyId,omitempty"`
	EventTime       EpochTime
	EventSource     string
	Username        string `json:",omitempty"`
	Resources       []Resource
	CloudTrailEvent string
}

// LookupEventsOutput is CloudTrail's LookupEvents answer.
type LookupEventsOutput struct {
	Events    []Event
	NextToken string `json:",omitempty"`
}

// LookupEvents calls CloudTrail's LookupEvents: events newest first, one
// page at a time.
func LookupEvents(ctx context.Context, cfg aws.Config, in *LookupEventsInput) (*LookupEventsOutput, error) {
	var out LookupEventsOutput
	if err := CallJSON(ctx, cfg, CloudTrailTarget, CloudTrailSigningName, "LookupEvents", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ExportedRecord is one record of ExportAuditRecords: the stored body, its
// place in the hash chain, and the lookup columns and resource index the
// server's store holds for it.
type ExportedRecord struct {
	Seq      int64
	EventID  string `json:"EventId"`
	Body     json.RawMessage
	PrevHash string // hex
	Hash     string // hex
	Stored   *struct {
		EventTime   time.Time
		EventName   string
		EventSource string
		UserName    string
		AccessKeyID string `json:"AccessKeyId"`
		ErrorCode   string
		Resources   []string
		Indexed     []string
	}
}

// Record converts r to the domain type that package audit verifies.
func (r *ExportedRecord) Record() (postern.AuditRecord, error) {
	rec := postern.AuditRecord{Seq: r.Seq, EventID: r.EventID, Body: []byte(r.Body)}
	if c := r.Stored; c != nil {
		rec.Stored, rec.EventTime, rec.EventName, rec.EventSource = true, c.EventTime, c.EventName, c.EventSource
		rec.UserName, rec.AccessKeyID, rec.ErrorCode, rec.Resources, rec.Indexed = c.UserName, c.AccessKeyID, c.ErrorCode, c.Resources, c.Indexed
	}
	// A body that is not valid JSON (which only tampering produces) comes
	// as a JSON string of the stored bytes; unwrap it so that the verifier
	// sees what is stored and reports the record.
	if len(r.Body) > 0 && r.Body[0] == '"' {
		var s string
		if err := json.Unmarshal(r.Body, &s); err != nil {
			return rec, fmt.Errorf("record %d: body: %v", r.Seq, err)
		}
		rec.Body = []byte(s)
	}
	var err error
	if rec.PrevHash, err = hex.DecodeString(r.PrevHash); err != nil {
		return rec, fmt.Errorf("record %d: PrevHash is not hex", r.Seq)
	}
	if rec.Hash, err = hex.DecodeString(r.Hash); err != nil {
		return rec, fmt.Errorf("record %d: Hash is not hex", r.Seq)
	}
	return rec, nil
}

// ExportAuditRecordsOutput is one page of the raw trail, oldest first.
// NextSeq is 0 when the page reached the end of the trail.
type ExportAuditRecordsOutput struct {
	Records []ExportedRecord
	NextSeq int64
}

// ExportAuditRecords returns up to limit records with Seq >= fromSeq (the
// server caps a page at 1000).
func ExportAuditRecords(ctx context.Context, cfg aws.Config, fromSeq int64, limit int) (*ExportAuditRecordsOutput, error) {
	in := struct {
		FromSeq int64
		Limit   int
	}{fromSeq, limit}
	var out ExportAuditRecordsOutput
	if err := CallJSON(ctx, cfg, PosternTarget, PosternSigningName, "ExportAuditRecords", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAuditDigests returns the signed digests with Seq >= fromSeq, oldest
// first.
func ListAuditDigests(ctx context.Context, cfg aws.Config, fromSeq int64) ([]postern.AuditDigest, error) {
	var out struct {
		Digests []struct {
			Seq       int64
			Hash      string
			Time      time.Time
			KeyID     string `json:"KeyId"`
			Signature []byte
		}
	}
	in := struct{ FromSeq int64 }{fromSeq}
	if err := CallJSON(ctx, cfg, PosternTarget, PosternSigningName, "ListAuditDigests", in, &out); err != nil {
		return nil, err
	}
	ds := make([]postern.AuditDigest, 0, len(out.Digests))
	for _, d := range out.Digests {
		h, err := hex.DecodeString(d.Hash)
		if err != nil {
			return nil, fmt.Errorf("digest %d: Hash is not hex", d.Seq)
		}
		ds = append(ds, postern.AuditDigest{Seq: d.Seq, Hash: h, Time: d.Time, KeyID: d.KeyID, Signature: d.Signature})
	}
	return ds, nil
}

// GetAuditPublicKey returns the key the server signs digests with, as the
// server states it, and its key id.
func GetAuditPublicKey(ctx context.Context, cfg aws.Config) (ed25519.PublicKey, string, error) {
	var out struct {
		KeyID     string `json:"KeyId"`
		PublicKey string
	}
	if err := CallJSON(ctx, cfg, PosternTarget, PosternSigningName, "GetAuditPublicKey", nil, &out); err != nil {
		return nil, "", err
	}
	pub, err := keyfile.ParsePublic([]byte(out.PublicKey))
	if err != nil {
		return nil, "", fmt.Errorf("the server's audit public key: %w", err)
	}
	return pub, out.KeyID, nil
}

// AuditSource reads a server's trail through the API, for package audit's
// verifier (it implements audit.Source) without holding the whole trail in
// memory. Two things make it a consistent snapshot of a trail that keeps
// growing (every page fetched is itself audited): the digests are read
// once, when the source is made, before any record, so every digest covers
// records that exist by the time they are scanned; and the first time a
// page reaches the end of the trail, that end is fixed, so a scan that
// follows the verifier's own audit records cannot go on forever.
type AuditSource struct {
	cfg     aws.Config
	digests []postern.AuditDigest
	ended   bool  // a page reached the end of the trail …
	end     int64 // … and this was its last Seq
}

// NewAuditSource reads the digests and returns a source over the trail.
func NewAuditSource(ctx context.Context, cfg aws.Config) (*AuditSource, error) {
	ds, err := ListAuditDigests(ctx, cfg, 0)
	if err != nil {
		return nil, err
	}
	return &AuditSource{cfg: cfg, digests: ds}, nil
}

// ScanAudit returns up to limit records with Seq >= from, in order,
// fetching as many pages as it takes: a short answer means the end of the
// snapshot, never the server's page size.
func (s *AuditSource) ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error) {
	var recs []postern.AuditRecord
	for limit <= 0 || len(recs) < limit {
		if s.ended && from > s.end {
			break
		}
		n := 1000
		if limit > 0 {
			n = min(n, limit-len(recs))
		}
		page, err := ExportAuditRecords(ctx, s.cfg, from, n)
		if err != nil {
			return nil, err
		}
		for i := range page.Records {
			if s.ended && page.Records[i].Seq > s.end {
				break
			}
			r, err := page.Records[i].Record()
			if err != nil {
				return nil, err
			}
			recs = append(recs, r)
		}
		if page.NextSeq == 0 || len(page.Records) == 0 {
			if !s.ended {
				s.ended, s.end = true, from-1
				if len(page.Records) > 0 {
					s.end = page.Records[len(page.Records)-1].Seq
				}
			}
			break
		}
		from = page.NextSeq
	}
	return recs, nil
}

// ListAuditDigests returns the digests read when the source was made, with
// Seq >= from.
func (s *AuditSource) ListAuditDigests(ctx context.Context, from int64) ([]postern.AuditDigest, error) {
	var out []postern.AuditDigest
	for _, d := range s.digests {
		if d.Seq >= from {
			out = append(out, d)
		}
	}
	return out, nil
}
