package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

// Source is where Verify reads a trail: the store itself, or the records
// and digests a client downloaded.
type Source interface {
	ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error)
	ListAuditDigests(ctx context.Context, from int64) ([]postern.AuditDigest, error)
}

// Problem is one thing wrong with the trail.
type Problem struct {
	Seq     int64  // the record (or digest) concerned
	EventID string // when known
	What    string
}

func (p Problem) String() string {
	if p.EventID != "" {
		return fmt.Sprintf("record %d (event %s): %s", p.Seq, p.EventID, p.What)
	}
	return fmt.Sprintf("record %d: %s", p.Seq, p.What)
}

// Report is the outcome of Verify.
type Report struct {
	Records  int
	Digests  int
	LastSeq  int64
	Problems []Problem
	Warnings []string
}

// OK reports whether the trail verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "OK: %d records (1..%d) form an unbroken chain; %d signed digests verify.\n", r.Records, r.LastSeq, r.Digests)
	} else {
		fmt.Fprintf(&b, "FAILED: %d problems in %d records and %d digests:\n", len(r.Problems), r.Records, r.Digests)
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "  %s\n", p)
		}
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func (r *Report) problem(seq int64, eventID, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Seq: seq, EventID: eventID, What: fmt.Sprintf(format, args...)})
}

// pageSize is how many records Verify reads at once.
const pageSize = 1000

// Verify checks the whole trail: sequence numbers run 1, 2, 3, … without
// gaps or repeats; each record's PrevHash is the previous record's Hash;
// each Hash recomputes from the record; each body is the JSON of the event
// it claims; and each digest is signed by pub and names the hash the chain
// has at its sequence number. Records after the last digest are reported
// as a warning: nothing signed covers them yet.
func Verify(ctx context.Context, src Source, pub ed25519.PublicKey) (*Report, error) {
	rep := &Report{}
	digests, err := src.ListAuditDigests(ctx, 0)
	if err != nil {
		return nil, err
	}
	rep.Digests = len(digests)
	wantKeyID := keyfile.KeyID(pub)
	bySeq := map[int64][]postern.AuditDigest{}
	var lastDigest int64
	for _, d := range digests {
		switch {
		case d.KeyID != wantKeyID:
			rep.problem(d.Seq, "", "digest signed by key %s, not the expected %s", d.KeyID, wantKeyID)
		case !ed25519.Verify(pub, DigestMessage(d), d.Signature):
			rep.problem(d.Seq, "", "digest signature does not verify: the digest was forged or altered")
		default:
			bySeq[d.Seq] = append(bySeq[d.Seq], d)
			lastDigest = max(lastDigest, d.Seq)
		}
	}

	expect := int64(1)
	prev := postern.GenesisHash
	from := int64(1)
	for {
		recs, err := src.ScanAudit(ctx, from, pageSize)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			rep.Records++
			switch {
			case r.Seq > expect:
				if expect == r.Seq-1 {
					rep.problem(expect, "", "record is missing (removed)")
				} else {
					rep.problem(expect, "", "records %d to %d are missing (removed)", expect, r.Seq-1)
				}
			case r.Seq < expect:
				rep.problem(r.Seq, r.EventID, "sequence number repeats or goes backwards after %d (inserted or reordered)", expect-1)
			}
			if !bytes.Equal(r.PrevHash, prev) {
				rep.problem(r.Seq, r.EventID, "does not link to the record before it (a record was inserted, removed or reordered before it)")
			}
			if !bytes.Equal(postern.ChainHash(r.PrevHash, r.Seq, r.Body), r.Hash) {
				rep.problem(r.Seq, r.EventID, "hash does not match its content (the record was altered)")
			}
			var ev struct {
				EventID string `json:"eventID"`
			}
			if err := json.Unmarshal(r.Body, &ev); err != nil {
				rep.problem(r.Seq, r.EventID, "body is not valid JSON (the record was altered)")
			} else if ev.EventID != r.EventID {
				rep.problem(r.Seq, r.EventID, "body names event %s (the record was altered)", ev.EventID)
			}
			for _, d := range bySeq[r.Seq] {
				if !bytes.Equal(d.Hash, r.Hash) {
					rep.problem(r.Seq, r.EventID, "differs from the signed digest of %s (the chain was rewritten)", d.Time.Format("2006-01-02T15:04:05Z07:00"))
				}
			}
			delete(bySeq, r.Seq)
			prev = r.Hash
			rep.LastSeq = max(rep.LastSeq, r.Seq)
			expect = max(expect, r.Seq+1)
		}
		from = recs[len(recs)-1].Seq + 1
	}
	for seq := range bySeq {
		rep.problem(seq, "", "a signed digest covers this record but the trail ends at %d (records were removed from the end)", rep.LastSeq)
	}
	if rep.LastSeq > lastDigest {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("records %d to %d are not yet covered by a signed digest", lastDigest+1, rep.LastSeq))
	}
	return rep, nil
}
