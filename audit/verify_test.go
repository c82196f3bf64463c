package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

// signedTrail returns a trail of 10 records with digests at 5 and 10.
func signedTrail(t testing.TB) (*Trail, *memStore, ed25519.PublicKey) {
	t.Helper()
	tr, st, pub := newTestTrail(t, 5)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	record(t, tr, 5)
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	return tr, st, pub
}

// insertAt returns recs with r inserted before index i.
func insertAt(recs []postern.AuditRecord, i int, r postern.AuditRecord) []postern.AuditRecord {
	return append(recs[:i:i], append([]postern.AuditRecord{r}, recs[i:]...)...)
}

// fakeRecord is a record someone adds: a plausible event that links to
// prev.
func fakeRecord(seq int64, prev []byte) postern.AuditRecord {
	body := []byte(`{"eventVersion":"1.08","eventName":"Nothing","eventID":"fake-event"}`)
	return postern.AuditRecord{Seq: seq, EventID: "fake-event", EventName: "Nothing", Body: body,
		PrevHash: prev, Hash: postern.ChainHash(prev, seq, body)}
}

// renumber gives recs[from:] the sequence numbers their positions say.
func renumber(st *memStore, from int) {
	for i := from; i < len(st.recs); i++ {
		st.recs[i].Seq = int64(i + 1)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	type want struct {
		seq  int64
		kind ProblemKind
	}
	tests := []struct {
		name   string
		tamper func(st *memStore)
		want   []want // each must be among the problems
	}{
		{"body byte altered", func(st *memStore) {
			st.recs[4].Body = bytes.Replace(st.recs[4].Body, []byte("Call4"), []byte("Call9"), 1)
		}, []want{{5, Altered}}},
		{"body no longer JSON", func(st *memStore) { st.recs[6].Body[0] = '[' }, []want{{7, Altered}}},
		{"body and hash altered together", func(st *memStore) {
			st.recs[2].Body = bytes.Replace(st.recs[2].Body, []byte("alice"), []byte("mallo"), 1)
			st.recs[2].Hash = postern.ChainHash(st.recs[2].PrevHash, 3, st.recs[2].Body)
		}, []want{{3, Altered}, {4, Unlinked}}},
		{"hash altered", func(st *memStore) { st.recs[2].Hash[0] ^= 1 }, []want{{3, Altered}, {4, Unlinked}}},
		{"event id column altered", func(st *memStore) { st.recs[3].EventID = "other" }, []want{{4, Altered}}},
		{"user name column altered", func(st *memStore) { st.recs[3].UserName = "bob" }, []want{{4, Altered}}},
		{"event time column altered", func(st *memStore) {
			st.recs[3].EventTime = st.recs[3].EventTime.Add(-time.Hour)
		}, []want{{4, Altered}}},
		{"resources column altered", func(st *memStore) {
			st.recs[3].Resources = []string{"arn:aws:ec2:us-east-1:123456789012:instance/i-0000000000000000f"}
		}, []want{{4, Altered}}},
		{"middle record removed", func(st *memStore) {
			st.recs = append(st.recs[:3], st.recs[4:]...)
		}, []want{{4, Missing}, {5, Unlinked}}},
		{"first record removed", func(st *memStore) { st.recs = st.recs[1:] }, []want{{1, Missing}, {2, Unlinked}}},
		{"several removed, chain recomputed", func(st *memStore) {
			st.recs = append(st.recs[:2], st.recs[6:]...)
			st.rechain(2)
		}, []want{{3, Missing}, {10, Rewritten}}},
		{"last records removed after a digest", func(st *memStore) { st.recs = st.recs[:7] }, []want{{10, Truncated}}},
		{"all records after the first digest removed", func(st *memStore) { st.recs = st.recs[:5] }, []want{{10, Truncated}}},
		{"record inserted, later ones renumbered", func(st *memStore) {
			st.recs = insertAt(st.recs, 6, fakeRecord(7, st.recs[5].Hash))
			renumber(st, 7)
		}, []want{{8, Unlinked}, {8, Altered}, {10, Rewritten}}},
		{"record inserted, chain recomputed", func(st *memStore) {
			st.recs = insertAt(st.recs, 6, fakeRecord(7, st.recs[5].Hash))
			renumber(st, 7)
			st.rechain(7)
		}, []want{{10, Rewritten}}},
		{"record inserted before a digest, chain recomputed", func(st *memStore) {
			st.recs = insertAt(st.recs, 1, fakeRecord(2, st.recs[0].Hash))
			renumber(st, 2)
			st.rechain(2)
		}, []want{{5, Rewritten}, {10, Rewritten}}},
		{"record inserted with a repeated seq", func(st *memStore) {
			st.recs = insertAt(st.recs, 6, fakeRecord(6, st.recs[5].Hash))
		}, []want{{6, Misordered}, {7, Unlinked}}},
		{"two rows swapped", func(st *memStore) {
			st.recs[3], st.recs[4] = st.recs[4], st.recs[3]
		}, []want{{4, Missing}, {4, Misordered}}},
		{"two records swapped in place", func(st *memStore) {
			st.recs[3], st.recs[4] = st.recs[4], st.recs[3]
			st.recs[3].Seq, st.recs[4].Seq = 4, 5
		}, []want{{4, Unlinked}, {4, Altered}, {5, Unlinked}, {5, Altered}}},
		{"two records swapped, chain recomputed", func(st *memStore) {
			st.recs[6], st.recs[7] = st.recs[7], st.recs[6]
			renumber(st, 6)
			st.rechain(6)
		}, []want{{10, Rewritten}}},
		{"whole chain rewritten after altering one body", func(st *memStore) {
			st.recs[1].Body = bytes.Replace(st.recs[1].Body, []byte("Call1"), []byte("CallX"), 1)
			st.recs[1].EventName = "CallX"
			st.rechain(0)
		}, []want{{5, Rewritten}, {10, Rewritten}}},
		{"digest signature forged", func(st *memStore) { st.digests[1].Signature[0] ^= 1 }, []want{{10, BadDigest}}},
		{"digest hash changed to fit a rewrite", func(st *memStore) {
			st.recs[8].Body = bytes.Replace(st.recs[8].Body, []byte("Call8"), []byte("Call0"), 1)
			st.rechain(8)
			st.digests[1].Hash = st.recs[9].Hash
		}, []want{{10, BadDigest}}},
		{"digest signed by another key", func(st *memStore) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			d := &st.digests[1]
			d.Signature = ed25519.Sign(other, DigestMessage(*d))
		}, []want{{10, BadDigest}}},
		{"digest naming another key", func(st *memStore) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			d := &st.digests[0]
			d.KeyID = keyfile.KeyID(other.Public().(ed25519.PublicKey))
			d.Signature = ed25519.Sign(other, DigestMessage(*d))
		}, []want{{5, BadDigest}}},
		{"digest malformed", func(st *memStore) { st.digests[0].Hash = st.digests[0].Hash[:8] }, []want{{5, BadDigest}}},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, st, pub := signedTrail(t)
			rep, err := Verify(ctx, st, pub)
			if err != nil || !rep.OK() || len(rep.Warnings) != 0 {
				t.Fatalf("the clean trail does not verify: %v\n%s", err, rep)
			}
			tc.tamper(st)
			rep, err = Verify(ctx, st, pub)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("tampering not detected:\n%s", rep)
			}
			for _, w := range tc.want {
				found := false
				for _, p := range rep.Problems {
					found = found || p.Seq == w.seq && p.Kind == w.kind
				}
				if !found {
					t.Errorf("no %s problem at record %d:\n%s", w.kind, w.seq, rep)
				}
			}
			if !strings.HasPrefix(rep.String(), "FAILED: ") {
				t.Errorf("String() does not start with the verdict:\n%s", rep)
			}
		})
	}
}

// A record read from a store carries its lookup columns and resource
// index as stored: each must agree with the body, empty ones included.
func TestVerifyHoldsStoredColumnsToTheBody(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tamper func(r *postern.AuditRecord)
	}{
		{"nothing", func(*postern.AuditRecord) {}},
		{"user name blanked", func(r *postern.AuditRecord) { r.UserName = "" }},
		{"event name blanked", func(r *postern.AuditRecord) { r.EventName = "" }},
		{"event time blanked", func(r *postern.AuditRecord) { r.EventTime = time.Time{} }},
		{"resources blanked", func(r *postern.AuditRecord) { r.Resources = nil; r.Indexed = nil }},
		{"index rows deleted", func(r *postern.AuditRecord) { r.Indexed = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, st, pub := signedTrail(t)
			for i := range st.recs {
				st.recs[i].Stored = true
				st.recs[i].Indexed = slices.Clone(st.recs[i].Resources)
			}
			if len(st.recs[3].Resources) == 0 || st.recs[3].UserName == "" {
				t.Fatalf("record 4 has no resources or user to tamper with: %+v", st.recs[3])
			}
			tc.tamper(&st.recs[3])
			rep, err := Verify(ctx, st, pub)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "nothing" {
				if !rep.OK() {
					t.Fatalf("an untouched stored trail does not verify:\n%s", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not detected:\n%s", rep)
			}
			for _, p := range rep.Problems {
				if p.Seq != 4 || p.Kind != Altered {
					t.Errorf("want record 4 altered and nothing else, got:\n%s", rep)
				}
			}
		})
	}
}

func TestVerifyNamesTheEvent(t *testing.T) {
	_, st, pub := signedTrail(t)
	id := st.recs[4].EventID
	st.recs[4].Body[len(st.recs[4].Body)-2] ^= 1
	rep, err := Verify(context.Background(), st, pub)
	if err != nil || rep.OK() {
		t.Fatal(err, rep)
	}
	p := rep.Problems[0]
	if p.Seq != 5 || p.EventID != id || p.Kind != Altered || !strings.Contains(p.String(), "record 5 (event "+id+"): altered: ") {
		t.Errorf("problem %+v: %s", p, p)
	}
}

func TestVerifyCleanTrailAcrossPages(t *testing.T) {
	tr, st, pub := newTestTrail(t, 2500)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, st, pub)
	if err != nil || !rep.OK() {
		t.Fatalf("%v\n%s", err, rep)
	}
	if rep.Records != 2500 || rep.LastSeq != 2500 || rep.Digests != 1 || rep.CoveredSeq != 2500 || len(rep.Warnings) != 0 {
		t.Errorf("report %+v", rep)
	}
	// A page boundary is no place to hide a problem.
	st.recs[pageSize].Hash[0] ^= 1
	rep, _ = Verify(ctx, st, pub)
	if len(rep.Problems) != 2 || rep.Problems[0].Seq != pageSize+1 || rep.Problems[1].Seq != pageSize+2 {
		t.Errorf("altering record %d:\n%s", pageSize+1, rep)
	}
}

func TestVerifyWarnings(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		records int
		digest  bool
		after   int
		want    string
	}{
		{"empty", 0, false, 0, "the trail is empty"},
		{"no digest", 3, false, 0, "no valid signed digest"},
		{"uncovered tail", 3, true, 2, "records 4 to 5 are not yet covered by a signed digest"},
		{"one uncovered", 3, true, 1, "record 4 is not yet covered by a signed digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, st, pub := newTestTrail(t, tc.records)
			if tc.digest {
				if _, err := tr.Digest(ctx); err != nil {
					t.Fatal(err)
				}
			}
			record(t, tr, tc.after)
			rep, err := Verify(ctx, st, pub)
			if err != nil || !rep.OK() {
				t.Fatalf("%v\n%s", err, rep)
			}
			if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], tc.want) {
				t.Errorf("warnings %q, want one containing %q", rep.Warnings, tc.want)
			}
			if !strings.HasPrefix(rep.String(), "OK: ") || !strings.Contains(rep.String(), "warning: "+tc.want) {
				t.Errorf("String():\n%s", rep)
			}
		})
	}
}

func TestReportOutput(t *testing.T) {
	_, st, pub := signedTrail(t)
	ctx := context.Background()
	rep, err := Verify(ctx, st, pub)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.String()
	for _, want := range []string{"OK: 10 records (up to 10), 2 digests", "Signed digests cover records up to 10 (signed 20"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(b, &got)
	if got["OK"] != true || got["Records"] != 10.0 || got["LastSeq"] != 10.0 || got["Problems"] == nil {
		t.Errorf("JSON %s", b)
	}

	st.recs = st.recs[:8]
	rep, _ = Verify(ctx, st, pub)
	s = rep.String()
	if !strings.HasPrefix(s, "FAILED: 1 problem in 8 records (up to 8) and 2 digests.") ||
		!strings.Contains(s, "digest of record 10: truncated: ") || !strings.Contains(s, "records 9 to 10 were removed from the end") {
		t.Errorf("String():\n%s", s)
	}
	b, _ = json.Marshal(rep)
	if !strings.Contains(string(b), `"OK":false`) || !strings.Contains(string(b), `"Kind":"truncated"`) {
		t.Errorf("JSON %s", b)
	}
}

func TestVerifyBoundsItsReport(t *testing.T) {
	_, st, pub := newTestTrail(t, maxProblems+200)
	for i := range st.recs {
		st.recs[i].Hash[0] ^= 1 // two problems each: altered, and the next is unlinked
	}
	rep, err := Verify(context.Background(), st, pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Problems) != maxProblems || rep.MoreProblems != 2*(maxProblems+200)-1-maxProblems {
		t.Errorf("%d problems listed, %d more", len(rep.Problems), rep.MoreProblems)
	}
	if !strings.Contains(rep.String(), fmt.Sprintf("… and %d more problems", rep.MoreProblems)) {
		t.Error("String() does not count the unlisted problems")
	}
}

// failingSource fails on the page after the first.
type failingSource struct{ *memStore }

func (f failingSource) ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error) {
	if from > 1 {
		return nil, errors.New("connection reset")
	}
	return f.memStore.ScanAudit(ctx, from, limit)
}

// stuckSource answers the first page whatever is asked.
type stuckSource struct{ *memStore }

func (s stuckSource) ScanAudit(ctx context.Context, _ int64, limit int) ([]postern.AuditRecord, error) {
	return s.memStore.ScanAudit(ctx, 1, limit)
}

func TestVerifySourceErrors(t *testing.T) {
	ctx := context.Background()
	_, st, pub := newTestTrail(t, pageSize+1)
	if _, err := Verify(ctx, failingSource{st}, pub); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("err = %v", err)
	}
	if _, err := Verify(ctx, stuckSource{st}, pub); err == nil {
		t.Error("a source that ignores from made Verify loop or succeed")
	}
	if _, err := Verify(ctx, st, pub[:5]); err == nil {
		t.Error("a short public key was accepted")
	}
	st.fail = errors.New("no such table")
	if _, err := Verify(ctx, st, pub); err == nil {
		t.Error("a store error was not returned")
	}
}

func BenchmarkRecord(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tr := NewTrail(&chainOnlyStore{}, priv, nil)
	ctx := context.Background()
	ev := Event{
		EventSource: "ec2-instance-connect.amazonaws.com", EventName: "SendSSHPublicKey",
		AWSRegion: "us-east-1", SourceIPAddress: "203.0.113.7", UserAgent: "aws-cli/2.17.0",
		UserIdentity: UserIdentity{Type: "IAMUser", PrincipalID: "AIDAEXAMPLE", ARN: "arn:aws:iam::123456789012:user/alice",
			AccountID: "123456789012", AccessKeyID: "AKIAIOSFODNN7EXAMPLE", UserName: "alice"},
		RequestParameters: map[string]any{"instanceId": "i-0123456789abcdef0", "instanceOSUser": "ec2-user",
			"sSHPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		ResponseElements: map[string]any{"requestId": "5c2b8f2a-1d7e-4e0b-9f3c-1f1f1f1f1f1f", "success": true},
		AdditionalEventData: map[string]any{"policyDecisions": []map[string]any{{
			"action": "ec2-instance-connect:SendSSHPublicKey", "decision": "allowed", "policy": "ops", "sid": "Push"}}},
		RequestID: "5c2b8f2a-1d7e-4e0b-9f3c-1f1f1f1f1f1f", EventType: "AwsApiCall", RecipientAccountID: "123456789012",
		Resources: []Resource{{ARN: "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0", Type: "AWS::EC2::Instance"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		e := ev
		if _, err := tr.Record(ctx, &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	const n = 10000
	tr, st, pub := newTestTrail(b, n)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		b.Fatal(err)
	}
	src := sliceSource{st.recs, st.digests}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Verify(ctx, src, pub)
		if err != nil || !rep.OK() {
			b.Fatal(err, rep)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// chainOnlyStore chains records and forgets them, so that a benchmark
// measures Record rather than a growing slice.
type chainOnlyStore struct {
	mu   sync.Mutex
	seq  int64
	hash []byte
}

func (s *chainOnlyStore) AppendAudit(_ context.Context, r *postern.AuditRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hash == nil {
		s.hash = postern.GenesisHash
	}
	s.seq++
	r.Seq, r.PrevHash = s.seq, s.hash
	r.Hash = postern.ChainHash(s.hash, s.seq, r.Body)
	s.hash = r.Hash
	return nil
}

func (s *chainOnlyStore) LookupAudit(context.Context, postern.AuditQuery) ([]postern.AuditRecord, error) {
	return nil, nil
}

func (s *chainOnlyStore) ScanAudit(context.Context, int64, int) ([]postern.AuditRecord, error) {
	return nil, nil
}

func (s *chainOnlyStore) PutAuditDigest(context.Context, *postern.AuditDigest) error { return nil }

func (s *chainOnlyStore) ListAuditDigests(context.Context, int64) ([]postern.AuditDigest, error) {
	return nil, nil
}

// sliceSource serves a contiguous trail without copying, so that a
// benchmark measures Verify rather than the fake store.
type sliceSource struct {
	recs    []postern.AuditRecord
	digests []postern.AuditDigest
}

func (s sliceSource) ScanAudit(_ context.Context, from int64, limit int) ([]postern.AuditRecord, error) {
	i := min(int(from-1), len(s.recs))
	return s.recs[i:min(i+limit, len(s.recs))], nil
}

func (s sliceSource) ListAuditDigests(context.Context, int64) ([]postern.AuditDigest, error) {
	return s.digests, nil
}

func TestVerifySaysWhichKeySigned(t *testing.T) {
	_, st, pub := signedTrail(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	d := &st.digests[0]
	d.KeyID = keyfile.KeyID(other.Public().(ed25519.PublicKey))
	d.Signature = ed25519.Sign(other, DigestMessage(*d))
	rep, err := Verify(context.Background(), st, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].What, "names key "+d.KeyID+", not "+keyfile.KeyID(pub)) {
		t.Errorf("%s", rep)
	}
}
