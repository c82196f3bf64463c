package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

// rec builds a record whose body is unique to id.
func rec(id, eventName, user, errorCode string, at time.Time, resources ...string) *postern.AuditRecord {
	return &postern.AuditRecord{
		EventID:     id,
		EventTime:   at,
		EventName:   eventName,
		EventSource: "ec2-instance-connect.amazonaws.com",
		UserName:    user,
		AccessKeyID: "AKIA" + user,
		ErrorCode:   errorCode,
		Resources:   resources,
		Body: fmt.Appendf(nil, `{"eventID":%q,"eventName":%q,"eventTime":%q,"userIdentity":{"userName":%q},"errorCode":%q}`,
			id, eventName, at.UTC().Format(time.RFC3339Nano), user, errorCode),
	}
}

func appendRec(t *testing.T, s postern.Store, r *postern.AuditRecord) *postern.AuditRecord {
	t.Helper()
	ok(t, s.AppendAudit(t.Context(), r), "AppendAudit "+r.EventID)
	return r
}

// appendN appends n records from a few goroutines and returns them in Seq
// order.
func appendN(t *testing.T, s postern.Store, n int) []*postern.AuditRecord {
	t.Helper()
	out := make([]*postern.AuditRecord, n)
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				r := rec(fmt.Sprintf("bulk-%05d", i), "DescribeInstances", "bulk", "", stamp(i))
				if err := s.AppendAudit(context.Background(), r); err != nil {
					errs <- err
					return
				}
				out[i] = r
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendAudit: %v", err)
	}
	slices.SortFunc(out, func(a, b *postern.AuditRecord) int { return int(a.Seq - b.Seq) })
	return out
}

func sameRecord(t *testing.T, got, want *postern.AuditRecord) {
	t.Helper()
	what := fmt.Sprintf("record %d (%s)", want.Seq, want.EventID)
	if got.Seq != want.Seq || got.EventID != want.EventID || got.EventName != want.EventName ||
		got.EventSource != want.EventSource || got.UserName != want.UserName ||
		got.AccessKeyID != want.AccessKeyID || got.ErrorCode != want.ErrorCode {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
	if len(got.Resources) != 0 || len(want.Resources) != 0 {
		if !slices.Equal(got.Resources, want.Resources) {
			t.Errorf("%s resources = %q, want %q", what, got.Resources, want.Resources)
		}
	}
	if !bytes.Equal(got.Body, want.Body) || !bytes.Equal(got.PrevHash, want.PrevHash) || !bytes.Equal(got.Hash, want.Hash) {
		t.Errorf("%s body or hashes differ:\n got %s %x %x\nwant %s %x %x", what, got.Body, got.PrevHash, got.Hash, want.Body, want.PrevHash, want.Hash)
	}
	sameTime(t, what+" EventTime", got.EventTime, want.EventTime)
}

// verifyChain checks that recs are the records 1…len(recs), each linked to
// the one before by postern.ChainHash.
func verifyChain(t *testing.T, recs []postern.AuditRecord) {
	t.Helper()
	prev := postern.GenesisHash
	for i, r := range recs {
		if want := int64(i + 1); r.Seq != want {
			t.Fatalf("record %d has Seq %d: the chain has a gap or is out of order", want, r.Seq)
		}
		if !bytes.Equal(r.PrevHash, prev) {
			t.Fatalf("record %d: PrevHash %x, want the previous Hash %x", r.Seq, r.PrevHash, prev)
		}
		if want := postern.ChainHash(prev, r.Seq, r.Body); !bytes.Equal(r.Hash, want) {
			t.Fatalf("record %d: Hash %x, want ChainHash %x", r.Seq, r.Hash, want)
		}
		prev = r.Hash
	}
}

func seqs(recs []postern.AuditRecord) []int64 {
	out := []int64{}
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func testAuditAppend(t *testing.T, s postern.Store) {
	ctx := t.Context()
	recs, err := s.ScanAudit(ctx, 1, 10)
	ok(t, err, "ScanAudit of an empty trail")
	if len(recs) != 0 {
		t.Errorf("ScanAudit of an empty trail = %v", seqs(recs))
	}

	r1 := appendRec(t, s, rec("e1", "SendSSHPublicKey", "alice", "", stamp(0), "arn:aws:ec2:eu-west-1:123456789012:instance/i-0a000000000000001"))
	if r1.Seq != 1 || !bytes.Equal(r1.PrevHash, postern.GenesisHash) || !bytes.Equal(r1.Hash, postern.ChainHash(postern.GenesisHash, 1, r1.Body)) {
		t.Errorf("first record: Seq %d PrevHash %x Hash %x", r1.Seq, r1.PrevHash, r1.Hash)
	}
	r2 := appendRec(t, s, rec("e2", "OpenTunnel", "", "AuthFailure", stamp(1)))
	if r2.Seq != 2 || !bytes.Equal(r2.PrevHash, r1.Hash) || !bytes.Equal(r2.Hash, postern.ChainHash(r1.Hash, 2, r2.Body)) {
		t.Errorf("second record: Seq %d PrevHash %x Hash %x", r2.Seq, r2.PrevHash, r2.Hash)
	}
	// The caller owns the slices it got: scribbling on them must not
	// bend the chain.
	r2.Hash[0] ^= 0xff
	r2.PrevHash[0] ^= 0xff
	r3 := appendRec(t, s, rec("e3", "OpenTunnel", "bob", "", stamp(2), "a", "b", "c"))
	r2.Hash[0] ^= 0xff
	r2.PrevHash[0] ^= 0xff
	if !bytes.Equal(r3.PrevHash, r2.Hash) {
		t.Errorf("third record's PrevHash %x, want %x", r3.PrevHash, r2.Hash)
	}

	recs, err = s.ScanAudit(ctx, 1, 10)
	ok(t, err, "ScanAudit")
	if len(recs) != 3 {
		t.Fatalf("ScanAudit returned %v, want 1, 2, 3", seqs(recs))
	}
	verifyChain(t, recs)
	for i, want := range []*postern.AuditRecord{r1, r2, r3} {
		sameRecord(t, &recs[i], want)
		// What the store holds for lookups comes along, for the verifier.
		if !recs[i].Stored || !slices.Equal(slices.Sorted(slices.Values(recs[i].Indexed)), slices.Sorted(slices.Values(want.Resources))) {
			t.Errorf("record %d: Stored %v, Indexed %v; want true and its resources %v", recs[i].Seq, recs[i].Stored, recs[i].Indexed, want.Resources)
		}
	}
}

func testAuditChainConcurrent(t *testing.T, s postern.Store) {
	const goroutines, each = 50, 20
	var (
		mu  sync.Mutex
		got = map[int64]*postern.AuditRecord{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r := rec(fmt.Sprintf("g%02d-%02d", g, i), "SendSSHPublicKey", fmt.Sprintf("user%02d", g), "", stamp(i),
					fmt.Sprintf("arn:aws:ec2:eu-west-1:123456789012:instance/i-%017x", g))
				if err := s.AppendAudit(context.Background(), r); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(r.Hash, postern.ChainHash(r.PrevHash, r.Seq, r.Body)) {
					errs <- fmt.Errorf("record %s: Hash is not ChainHash(PrevHash, Seq, Body)", r.EventID)
					return
				}
				mu.Lock()
				dup := got[r.Seq]
				got[r.Seq] = r
				mu.Unlock()
				if dup != nil {
					errs <- fmt.Errorf("records %s and %s both got Seq %d", dup.EventID, r.EventID, r.Seq)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	recs, err := s.ScanAudit(t.Context(), 1, 2*goroutines*each)
	ok(t, err, "ScanAudit")
	if len(recs) != goroutines*each {
		t.Fatalf("ScanAudit returned %d records, want %d", len(recs), goroutines*each)
	}
	verifyChain(t, recs)
	for i := range recs {
		want, found := got[recs[i].Seq]
		if !found {
			t.Fatalf("stored record %d was never reported to an appender", recs[i].Seq)
		}
		sameRecord(t, &recs[i], want)
	}
}

func testAuditCancelled(t *testing.T, s postern.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := rec("cancelled", "SendSSHPublicKey", "alice", "", stamp(0))
	if err := s.AppendAudit(ctx, r); err == nil {
		t.Error("AppendAudit with a cancelled context succeeded")
	}
	if r.Seq != 0 || r.Hash != nil {
		t.Errorf("a failed append set Seq %d, Hash %x", r.Seq, r.Hash)
	}
	recs, err := s.ScanAudit(t.Context(), 1, 10)
	ok(t, err, "ScanAudit")
	if len(recs) != 0 {
		t.Fatalf("a cancelled append was stored: %v", seqs(recs))
	}
	r = appendRec(t, s, rec("next", "SendSSHPublicKey", "alice", "", stamp(0)))
	if r.Seq != 1 {
		t.Errorf("the append after a cancelled one got Seq %d, want 1", r.Seq)
	}
}

func testAuditLookupFilters(t *testing.T, s postern.Store) {
	ctx := t.Context()
	const (
		inst1 = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0a000000000000001"
		inst2 = "arn:aws:ec2:eu-west-1:123456789012:instance/i-0b000000000000002"
		eice  = "arn:aws:ec2:eu-west-1:123456789012:instance-connect-endpoint/eice-0a000000000000001"
	)
	t0 := stamp(0)
	minute := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	all := []*postern.AuditRecord{
		appendRec(t, s, rec("e1", "SendSSHPublicKey", "alice", "", minute(0), inst1)),
		appendRec(t, s, rec("e2", "OpenTunnel", "bob", "AccessDenied", minute(1), eice, inst1)),
		appendRec(t, s, rec("e3", "SendSSHPublicKey", "bob", "", minute(2), inst2)),
		appendRec(t, s, rec("e4", "DescribeInstances", "alice", "UnauthorizedOperation", minute(3))),
		appendRec(t, s, rec("e5", "SendSSHPublicKey", "alice", "", minute(4), inst1, inst2)),
	}
	other := time.FixedZone("UTC-8", -8*3600)
	tests := []struct {
		name string
		q    postern.AuditQuery
		want []int64
	}{
		{"everything", postern.AuditQuery{}, []int64{5, 4, 3, 2, 1}},
		{"event name", postern.AuditQuery{EventName: "SendSSHPublicKey"}, []int64{5, 3, 1}},
		{"user", postern.AuditQuery{UserName: "bob"}, []int64{3, 2}},
		{"resource", postern.AuditQuery{Resource: inst1}, []int64{5, 2, 1}},
		{"resource of one", postern.AuditQuery{Resource: eice}, []int64{2}},
		{"unknown resource", postern.AuditQuery{Resource: "arn:aws:ec2:eu-west-1:123456789012:instance/i-0c"}, []int64{}},
		{"resource prefix is not a match", postern.AuditQuery{Resource: inst1[:len(inst1)-1]}, []int64{}},
		{"errors only", postern.AuditQuery{ErrorsOnly: true}, []int64{4, 2}},
		{"start", postern.AuditQuery{Start: minute(1)}, []int64{5, 4, 3, 2}},
		{"start to the nanosecond", postern.AuditQuery{Start: minute(1).Add(time.Nanosecond)}, []int64{5, 4, 3}},
		{"end", postern.AuditQuery{End: minute(2)}, []int64{3, 2, 1}},
		{"end to the nanosecond", postern.AuditQuery{End: minute(2).Add(-time.Nanosecond)}, []int64{2, 1}},
		{"start and end in another zone", postern.AuditQuery{Start: minute(1).In(other), End: minute(2).In(other)}, []int64{3, 2}},
		{"before", postern.AuditQuery{BeforeSeq: 4}, []int64{3, 2, 1}},
		{"before the first", postern.AuditQuery{BeforeSeq: 1}, []int64{}},
		{"combined", postern.AuditQuery{EventName: "SendSSHPublicKey", UserName: "alice", Resource: inst1}, []int64{5, 1}},
		{"combined with errors", postern.AuditQuery{UserName: "bob", ErrorsOnly: true}, []int64{2}},
		{"combined with resource and before", postern.AuditQuery{Resource: inst2, BeforeSeq: 5}, []int64{3}},
		{"nothing matches", postern.AuditQuery{EventName: "SendSSHPublicKey", ErrorsOnly: true}, []int64{}},
	}
	for _, tt := range tests {
		recs, err := s.LookupAudit(ctx, tt.q)
		ok(t, err, "LookupAudit "+tt.name)
		if got := seqs(recs); !slices.Equal(got, tt.want) {
			t.Errorf("LookupAudit %s = %v, want %v", tt.name, got, tt.want)
		}
		for i := range recs {
			sameRecord(t, &recs[i], all[recs[i].Seq-1])
		}
	}
}

func testAuditLookupLimits(t *testing.T, s postern.Store) {
	ctx := t.Context()
	all := appendN(t, s, 1005)
	recs, err := s.LookupAudit(ctx, postern.AuditQuery{})
	ok(t, err, "LookupAudit")
	if len(recs) != 50 || recs[0].Seq != 1005 || recs[49].Seq != 956 {
		t.Errorf("LookupAudit with no limit returned %d records (%d…), want the newest 50", len(recs), firstSeq(recs))
	}
	recs, err = s.LookupAudit(ctx, postern.AuditQuery{Limit: 7})
	ok(t, err, "LookupAudit")
	if got := seqs(recs); !slices.Equal(got, []int64{1005, 1004, 1003, 1002, 1001, 1000, 999}) {
		t.Errorf("LookupAudit with limit 7 = %v", got)
	}
	recs, err = s.LookupAudit(ctx, postern.AuditQuery{Limit: 5000})
	ok(t, err, "LookupAudit")
	if len(recs) != 1000 || recs[0].Seq != 1005 || recs[999].Seq != 6 {
		t.Errorf("LookupAudit with limit 5000 returned %d records, want the newest 1000", len(recs))
	}
	for i := range recs {
		sameRecord(t, &recs[i], all[recs[i].Seq-1])
	}
}

func firstSeq(recs []postern.AuditRecord) int64 {
	if len(recs) == 0 {
		return 0
	}
	return recs[0].Seq
}

func testAuditLookupPaging(t *testing.T, s postern.Store) {
	ctx := t.Context()
	for i := range 23 {
		name := "DescribeInstances"
		if i%3 == 0 {
			name = "SendSSHPublicKey"
		}
		appendRec(t, s, rec(fmt.Sprintf("p%02d", i), name, "alice", "", stamp(i)))
	}
	for _, q := range []postern.AuditQuery{{}, {EventName: "SendSSHPublicKey"}, {EventName: "DescribeInstances", UserName: "alice"}} {
		want, err := s.LookupAudit(ctx, postern.AuditQuery{EventName: q.EventName, UserName: q.UserName, Limit: 1000})
		ok(t, err, "LookupAudit")
		var got []int64
		q.Limit = 5
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("paging %+v does not end", q)
			}
			page, err := s.LookupAudit(ctx, q)
			ok(t, err, "LookupAudit page")
			if len(page) > q.Limit {
				t.Fatalf("page of %d records, limit %d", len(page), q.Limit)
			}
			got = append(got, seqs(page)...)
			if len(page) < q.Limit {
				break
			}
			q.BeforeSeq = page[len(page)-1].Seq
		}
		if !slices.Equal(got, seqs(want)) {
			t.Errorf("paging %+v by 5 gave %v, want %v", q, got, seqs(want))
		}
	}
}

func testAuditScan(t *testing.T, s postern.Store) {
	ctx := t.Context()
	all := appendN(t, s, 10)
	tests := []struct {
		from  int64
		limit int
		want  []int64
	}{
		{1, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{0, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{4, 3, []int64{4, 5, 6}},
		{10, 3, []int64{10}},
		{11, 3, []int64{}},
		{1, 1, []int64{1}},
	}
	for _, tt := range tests {
		recs, err := s.ScanAudit(ctx, tt.from, tt.limit)
		ok(t, err, "ScanAudit")
		if got := seqs(recs); !slices.Equal(got, tt.want) {
			t.Errorf("ScanAudit(%d, %d) = %v, want %v", tt.from, tt.limit, got, tt.want)
		}
		for i := range recs {
			sameRecord(t, &recs[i], all[recs[i].Seq-1])
		}
	}
}

func sameDigest(t *testing.T, got, want *postern.AuditDigest) {
	t.Helper()
	if got.Seq != want.Seq || got.KeyID != want.KeyID || !bytes.Equal(got.Hash, want.Hash) || !bytes.Equal(got.Signature, want.Signature) {
		t.Errorf("digest = %+v, want %+v", got, want)
	}
	sameTime(t, fmt.Sprintf("digest %d Time", want.Seq), got.Time, want.Time)
}

func testAuditDigests(t *testing.T, s postern.Store) {
	ctx := t.Context()
	ds, err := s.ListAuditDigests(ctx, 0)
	ok(t, err, "ListAuditDigests with none")
	if len(ds) != 0 {
		t.Errorf("ListAuditDigests with none = %+v", ds)
	}
	digest := func(seq int64, minutes int) *postern.AuditDigest {
		return &postern.AuditDigest{
			Seq: seq, Time: stamp(60 * minutes), KeyID: "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
			Hash:      bytes.Repeat([]byte{byte(seq)}, 32),
			Signature: bytes.Repeat([]byte{byte(seq), byte(minutes)}, 32),
		}
	}
	// Digests come periodically, so two may cover the same Seq when
	// nothing was appended in between.
	want := []*postern.AuditDigest{digest(5, 0), digest(10, 60), digest(10, 120), digest(20, 180)}
	for _, d := range want {
		ok(t, s.PutAuditDigest(ctx, d), "PutAuditDigest")
	}
	for _, tt := range []struct {
		from int64
		want []*postern.AuditDigest
	}{
		{0, want},
		{5, want},
		{6, want[1:]},
		{10, want[1:]},
		{20, want[3:]},
		{21, nil},
	} {
		ds, err := s.ListAuditDigests(ctx, tt.from)
		ok(t, err, "ListAuditDigests")
		if len(ds) != len(tt.want) {
			t.Errorf("ListAuditDigests(%d) returned %d digests, want %d", tt.from, len(ds), len(tt.want))
			continue
		}
		for i := range ds {
			sameDigest(t, &ds[i], tt.want[i])
		}
	}
}

func testTimeRoundTrip(t *testing.T, s postern.Store) {
	ctx := t.Context()
	times := []time.Time{
		stamp(0),
		time.Now(), // with a monotonic reading, which must not matter
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2199, 12, 31, 23, 59, 59, 999999999, time.FixedZone("x", -12*3600)),
		{}, // the zero time stays zero
	}
	for i, at := range times {
		name := fmt.Sprintf("u%d", i)
		ok(t, s.CreateUser(ctx, &postern.User{Name: name, ID: "AIDA" + name, CreatedAt: at}), "CreateUser")
		u, err := s.GetUser(ctx, name)
		ok(t, err, "GetUser")
		sameTime(t, "CreatedAt", u.CreatedAt, at)
		if at.IsZero() != u.CreatedAt.IsZero() {
			t.Errorf("zero time %v came back as %v", at, u.CreatedAt)
		}

		r := appendRec(t, s, rec(fmt.Sprintf("t%d", i), "X", name, "", at))
		recs, err := s.ScanAudit(ctx, r.Seq, 1)
		ok(t, err, "ScanAudit")
		if len(recs) != 1 {
			t.Fatalf("ScanAudit(%d, 1) returned %d records", r.Seq, len(recs))
		}
		sameTime(t, "EventTime", recs[0].EventTime, at)

		ok(t, s.PutAuditDigest(ctx, &postern.AuditDigest{Seq: int64(100 + i), Time: at, Hash: []byte{1}, Signature: []byte{2}}), "PutAuditDigest")
		ds, err := s.ListAuditDigests(ctx, int64(100+i))
		ok(t, err, "ListAuditDigests")
		if len(ds) != 1 {
			t.Fatalf("ListAuditDigests(%d) returned %d digests", 100+i, len(ds))
		}
		sameTime(t, "digest Time", ds[0].Time, at)
	}
}
