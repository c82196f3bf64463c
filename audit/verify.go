package audit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

// Source is where Verify reads a trail: a store, or the records and digests
// a client downloads. postern.Store satisfies it.
type Source interface {
	// ScanAudit returns up to limit records with Seq >= from, in order.
	ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error)
	// ListAuditDigests returns digests with Seq >= from, oldest first.
	ListAuditDigests(ctx context.Context, from int64) ([]postern.AuditDigest, error)
}

// pageSize is how many records Verify and Digest read at once.
const pageSize = 1000

// maxProblems bounds the problems a Report lists, so that verifying a
// trail that is wrong throughout still runs in constant memory; the rest
// are only counted.
const maxProblems = 1000

// timeSlack is how far a record's EventTime column may be from its body's
// eventTime: stores may keep times more coarsely than the body.
const timeSlack = time.Second

// ProblemKind says what a Problem found.
type ProblemKind string

// The kinds of Problem.
const (
	Missing    ProblemKind = "missing"    // records were removed: the sequence has a gap
	Misordered ProblemKind = "misordered" // a sequence number repeats or goes back: a record was inserted or moved
	Unlinked   ProblemKind = "unlinked"   // PrevHash is not the previous record's Hash: inserted, removed or reordered
	Altered    ProblemKind = "altered"    // the hash does not match the content, or the columns do not match the body
	Rewritten  ProblemKind = "rewritten"  // the record's hash is not the one a signed digest names
	Truncated  ProblemKind = "truncated"  // a signed digest covers records past the end of the trail
	BadDigest  ProblemKind = "bad-digest" // a digest is malformed, forged, or signed by another key
)

// Problem is one thing wrong with a trail. Seq names the record concerned,
// or for kinds BadDigest and Truncated the record the digest names.
// EventID is the record's event id, when there is a record.
type Problem struct {
	Seq     int64
	EventID string `json:"EventId,omitempty"`
	Kind    ProblemKind
	What    string
}

func (p Problem) String() string {
	switch {
	case p.Kind == BadDigest || p.Kind == Truncated:
		return fmt.Sprintf("digest of record %d: %s: %s", p.Seq, p.Kind, p.What)
	case p.EventID != "":
		return fmt.Sprintf("record %d (event %s): %s: %s", p.Seq, p.EventID, p.Kind, p.What)
	}
	return fmt.Sprintf("record %d: %s: %s", p.Seq, p.Kind, p.What)
}

// Report is the outcome of Verify.
type Report struct {
	Records      int       // records read
	Digests      int       // digests read, valid or not
	LastSeq      int64     // the highest sequence number read
	CoveredSeq   int64     // the highest record a valid digest covers and matches; 0 if none
	CoveredAt    time.Time `json:",omitzero"` // when that digest was signed
	Problems     []Problem // by sequence number, at most 1000
	MoreProblems int       `json:",omitempty"` // problems found but not listed
	Warnings     []string  // facts that are not failures, such as records no digest covers yet
}

// OK reports whether the trail verified: no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.MoreProblems == 0 }

// MarshalJSON adds the verdict, OK, to the report's fields.
func (r *Report) MarshalJSON() ([]byte, error) {
	type fields Report // without the method
	out := struct {
		OK bool
		fields
	}{r.OK(), fields(*r)}
	if out.Problems == nil {
		out.Problems = []Problem{}
	}
	if out.Warnings == nil {
		out.Warnings = []string{}
	}
	return json.Marshal(out)
}

// String describes the report for people, one fact per line: the verdict,
// the problems, then the warnings.
func (r *Report) String() string {
	var b strings.Builder
	span := "no records"
	if r.Records > 0 {
		span = fmt.Sprintf("%d records (up to %d)", r.Records, r.LastSeq)
	}
	if r.OK() {
		fmt.Fprintf(&b, "OK: %s, %d digests; no record was altered, removed, inserted or reordered.\n", span, r.Digests)
	} else {
		n := len(r.Problems) + r.MoreProblems
		fmt.Fprintf(&b, "FAILED: %d %s in %s and %d digests.\n", n, plural(n, "problem", "problems"), span, r.Digests)
	}
	if r.CoveredSeq > 0 {
		fmt.Fprintf(&b, "Signed digests cover records up to %d (signed %s).\n", r.CoveredSeq, r.CoveredAt.UTC().Format(time.RFC3339))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	if r.MoreProblems > 0 {
		fmt.Fprintf(&b, "  … and %d more %s\n", r.MoreProblems, plural(r.MoreProblems, "problem", "problems"))
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (r *Report) add(p Problem) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	} else {
		r.MoreProblems++
	}
}

// Verify reads the whole trail from src and checks that nothing was
// altered, removed, inserted or reordered:
//
//   - sequence numbers run 1, 2, 3, … with no gap (records removed) and no
//     repeat or step back (records inserted or reordered);
//   - each record's PrevHash is the Hash of the record before it;
//   - each Hash is postern.ChainHash of the record's PrevHash, Seq and Body;
//   - each Body is an event whose eventID is the EventID column, and whose
//     other lookup fields match the columns that src fills in;
//   - each digest is well formed, names pub's KeyID and carries a valid
//     signature by pub, and the record at its Seq has its Hash — so a
//     chain recomputed after tampering is still caught;
//   - no valid digest covers records past the end of the trail.
//
// Records after the last valid digest are reported as a warning: they are
// consistent, but nothing signed vouches for them yet.
//
// Records are read in pages, so memory does not grow with the trail
// (digests are held in memory; a trail has far fewer of them). An error is
// returned only when src cannot be read; what is wrong with the trail is in
// the Report.
func Verify(ctx context.Context, src Source, pub ed25519.PublicKey) (*Report, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("audit: Verify needs an Ed25519 public key")
	}
	rep := &Report{}
	digests, err := src.ListAuditDigests(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("read the audit digests: %w", err)
	}
	rep.Digests = len(digests)
	keyID := keyfile.KeyID(pub)
	valid := map[int64][]postern.AuditDigest{}
	nvalid := 0
	for _, d := range digests {
		switch {
		case d.Seq < 1 || len(d.Hash) != sha256.Size:
			rep.add(Problem{Seq: d.Seq, Kind: BadDigest, What: "the digest is malformed"})
		case d.KeyID != keyID:
			rep.add(Problem{Seq: d.Seq, Kind: BadDigest, What: fmt.Sprintf("the digest of %s names key %s, not %s: another key signed it", stamp(d.Time), d.KeyID, keyID)})
		case !ed25519.Verify(pub, DigestMessage(d), d.Signature):
			rep.add(Problem{Seq: d.Seq, Kind: BadDigest, What: fmt.Sprintf("the signature of the digest of %s does not verify: the digest was forged or altered", stamp(d.Time))})
		default:
			valid[d.Seq] = append(valid[d.Seq], d)
			nvalid++
		}
	}

	c := chain{hash: postern.GenesisHash, problem: rep.add}
	for from := int64(1); ; {
		recs, err := src.ScanAudit(ctx, from, pageSize)
		if err != nil {
			return nil, fmt.Errorf("read the audit trail from record %d: %w", from, err)
		}
		for i := range recs {
			r := &recs[i]
			rep.Records++
			c.next(r)
			for _, d := range valid[r.Seq] {
				if !bytes.Equal(d.Hash, r.Hash) {
					rep.add(Problem{Seq: r.Seq, EventID: r.EventID, Kind: Rewritten,
						What: fmt.Sprintf("its hash is not the one the digest of %s signed: the chain was recomputed after tampering", stamp(d.Time))})
				} else if r.Seq >= rep.CoveredSeq {
					rep.CoveredSeq, rep.CoveredAt = r.Seq, d.Time
				}
			}
			delete(valid, r.Seq)
		}
		if len(recs) < pageSize {
			break // a short page is the end of the trail
		}
		if c.seq < from {
			return nil, fmt.Errorf("read the audit trail from record %d: the source answered records before it", from)
		}
		from = c.seq + 1
	}
	rep.LastSeq = c.seq

	// Valid digests left over name records that were never read: past the
	// end, the tail was cut off (a gap in the middle is reported already).
	var past []int64
	for seq := range valid {
		if seq > rep.LastSeq {
			past = append(past, seq)
		}
	}
	if len(past) > 0 {
		seq := slices.Max(past)
		d := valid[seq][0]
		rep.add(Problem{Seq: seq, Kind: Truncated, What: fmt.Sprintf(
			"the digest of %s covers records up to %d, but the trail ends at %d: %s removed from the end",
			stamp(d.Time), seq, rep.LastSeq, records(rep.LastSeq+1, seq, "was", "were"))})
	}

	// Problems read best in trail order; digest problems were found first.
	slices.SortStableFunc(rep.Problems, func(a, b Problem) int { return cmp.Compare(a.Seq, b.Seq) })

	switch {
	case rep.Records == 0:
		rep.Warnings = append(rep.Warnings, "the trail is empty")
	case nvalid == 0:
		rep.Warnings = append(rep.Warnings, "no valid signed digest: the chain is consistent with itself, but nothing signed shows that it was not rewritten as a whole")
	case rep.LastSeq > rep.CoveredSeq:
		rep.Warnings = append(rep.Warnings, records(rep.CoveredSeq+1, rep.LastSeq, "is", "are")+" not yet covered by a signed digest")
	}
	return rep, nil
}

// records names the records from a to b, followed by the verb that fits:
// "record 4 is", "records 4 to 6 are".
func records(a, b int64, one, many string) string {
	if a == b {
		return fmt.Sprintf("record %d %s", a, one)
	}
	return fmt.Sprintf("records %d to %d %s", a, b, many)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// chain follows a trail record by record and reports what breaks it. It
// starts after the record with sequence number seq and hash hash (0 and
// postern.GenesisHash for a whole trail). It checks records, not digests.
type chain struct {
	seq     int64  // the highest sequence number so far
	hash    []byte // the stored Hash of the record before the next one
	problem func(Problem)
}

// next checks r, the record that follows those seen so far.
func (c *chain) next(r *postern.AuditRecord) {
	report := func(kind ProblemKind, format string, args ...any) {
		c.problem(Problem{Seq: r.Seq, EventID: r.EventID, Kind: kind, What: fmt.Sprintf(format, args...)})
	}
	switch {
	case r.Seq == c.seq+1:
	case r.Seq > c.seq+1:
		// Name the first missing record; it has no event id left.
		c.problem(Problem{Seq: c.seq + 1, Kind: Missing, What: fmt.Sprintf(
			"%s missing (removed): the trail goes from %d to %d",
			records(c.seq+1, r.Seq-1, "is", "are"), c.seq, r.Seq)})
	default:
		report(Misordered, "its sequence number comes after %d: it was inserted or reordered", c.seq)
	}
	if !bytes.Equal(r.PrevHash, c.hash) {
		if c.seq == 0 {
			report(Unlinked, "its PrevHash does not start the chain: records before it were removed, or it was inserted")
		} else {
			report(Unlinked, "its PrevHash is not the hash of record %d: a record was inserted, removed or reordered before it", c.seq)
		}
	}
	if !bytes.Equal(postern.ChainHash(r.PrevHash, r.Seq, r.Body), r.Hash) {
		report(Altered, "its hash does not match its content")
	}
	checkBody(r, report)
	c.seq = max(c.seq, r.Seq)
	c.hash = r.Hash
}

// recordedFields are the parts of an event that a record copies into
// columns for lookups.
type recordedFields struct {
	EventID      string    `json:"eventID"`
	EventTime    time.Time `json:"eventTime"`
	EventName    string    `json:"eventName"`
	EventSource  string    `json:"eventSource"`
	ErrorCode    string    `json:"errorCode"`
	UserIdentity struct {
		UserName    string `json:"userName"`
		AccessKeyID string `json:"accessKeyId"`
	} `json:"userIdentity"`
	Resources []struct {
		ARN string `json:"ARN"`
	} `json:"resources"`
}

// checkBody checks that r's body is an event and that the lookup columns
// agree with it. For a record read from a store (Stored) every column is
// compared, empty or not, and so is the resource index: blanking a column
// or deleting an index row would hide the record from lookups. Records
// from elsewhere may come without their columns, so for them only the
// columns that are set are compared.
func checkBody(r *postern.AuditRecord, report func(ProblemKind, string, ...any)) {
	var ev recordedFields
	if err := json.Unmarshal(r.Body, &ev); err != nil {
		report(Altered, "its body is not a valid event: %v", err)
		return
	}
	if ev.EventID != r.EventID {
		report(Altered, "its body names event %q", ev.EventID)
	}
	col := func(name, column, body string) {
		if (column != "" || r.Stored) && column != body {
			report(Altered, "its %s column is %q but its body says %q", name, column, body)
		}
	}
	col("EventName", r.EventName, ev.EventName)
	col("EventSource", r.EventSource, ev.EventSource)
	col("UserName", r.UserName, ev.UserIdentity.UserName)
	col("AccessKeyID", r.AccessKeyID, ev.UserIdentity.AccessKeyID)
	col("ErrorCode", r.ErrorCode, ev.ErrorCode)
	if !r.EventTime.IsZero() || r.Stored {
		if d := r.EventTime.Sub(ev.EventTime); d > timeSlack || d < -timeSlack || r.EventTime.IsZero() != ev.EventTime.IsZero() {
			report(Altered, "its EventTime column is %s but its body says %s", stamp(r.EventTime), stamp(ev.EventTime))
		}
	}
	var arns []string
	for _, res := range ev.Resources {
		if res.ARN != "" {
			arns = append(arns, res.ARN)
		}
	}
	if (len(r.Resources) > 0 || r.Stored) && !slices.Equal(arns, r.Resources) {
		report(Altered, "its Resources column does not match its body")
	}
	if r.Stored {
		have := slices.Compact(slices.Sorted(slices.Values(r.Indexed)))
		if want := slices.Compact(slices.Sorted(slices.Values(arns))); !slices.Equal(have, want) {
			report(Altered, "the resource index holds %d of its %d resources: lookups by resource would miss it", len(have), len(want))
		}
	}
}
