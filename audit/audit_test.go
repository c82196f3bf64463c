package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

// memStore is an in-memory trail store that chains like the real ones.
type memStore struct {
	mu      sync.Mutex
	recs    []postern.AuditRecord
	digests []postern.AuditDigest
	fail    error
}

func (m *memStore) AppendAudit(_ context.Context, r *postern.AuditRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	prev := postern.GenesisHash
	if n := len(m.recs); n > 0 {
		prev = m.recs[n-1].Hash
	}
	r.Seq = int64(len(m.recs) + 1)
	r.PrevHash = prev
	r.Hash = postern.ChainHash(prev, r.Seq, r.Body)
	m.recs = append(m.recs, *r)
	return nil
}

func (m *memStore) ScanAudit(_ context.Context, from int64, limit int) ([]postern.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []postern.AuditRecord
	for _, r := range m.recs {
		if r.Seq >= from && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memStore) PutAuditDigest(_ context.Context, d *postern.AuditDigest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.digests = append(m.digests, *d)
	return nil
}

func (m *memStore) ListAuditDigests(_ context.Context, from int64) ([]postern.AuditDigest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []postern.AuditDigest
	for _, d := range m.digests {
		if d.Seq >= from {
			out = append(out, d)
		}
	}
	return out, nil
}

func newTrail(t *testing.T, n int) (*Trail, *memStore, ed25519.PublicKey) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	st := &memStore{}
	tr := NewTrail(st, priv, nil)
	for i := 0; i < n; i++ {
		if _, err := tr.Record(context.Background(), &Event{EventName: fmt.Sprintf("Call%d", i), UserIdentity: UserIdentity{Type: "IAMUser", UserName: "alice"}}); err != nil {
			t.Fatal(err)
		}
	}
	return tr, st, pub
}

func TestRecordFillsAndRedacts(t *testing.T) {
	tr, st, _ := newTrail(t, 0)
	rec, err := tr.Record(context.Background(), &Event{
		EventName: "CreateAccessKey", EventSource: "iam.amazonaws.com",
		UserIdentity:      UserIdentity{Type: "IAMUser", UserName: "admin", AccessKeyID: "AKIAEXAMPLE"},
		RequestParameters: map[string]any{"userName": "bob", "Password": "hunter2", "nested": map[string]any{"secretAccessKey": "s3cr3t"}},
		ResponseElements:  map[string]any{"accessKey": map[string]any{"accessKeyId": "AKIANEW", "SecretAccessKey": "topsecret"}},
		Resources:         []Resource{{ARN: "arn:aws:iam::123456789012:user/bob"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := string(rec.Body)
	for _, leak := range []string{"hunter2", "s3cr3t", "topsecret"} {
		if strings.Contains(body, leak) {
			t.Errorf("record leaks %q: %s", leak, body)
		}
	}
	if !strings.Contains(body, Redacted) || !strings.Contains(body, `"userName":"bob"`) {
		t.Errorf("redaction went wrong: %s", body)
	}
	var ev Event
	if err := json.Unmarshal(rec.Body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.EventVersion != EventVersion || ev.EventID == "" || ev.EventID != rec.EventID || ev.EventTime.IsZero() {
		t.Errorf("not filled in: %+v", ev)
	}
	if rec.UserName != "admin" || rec.AccessKeyID != "AKIAEXAMPLE" || len(rec.Resources) != 1 || rec.EventName != "CreateAccessKey" {
		t.Errorf("lookup columns: %+v", rec)
	}
	st.fail = fmt.Errorf("disk full")
	if _, err := tr.Record(context.Background(), &Event{EventName: "X"}); !postern.IsKind(err, postern.KindInternal) {
		t.Errorf("a failed append answered %v", err)
	}
}

func TestDigestOnlyWhenNew(t *testing.T) {
	tr, st, pub := newTrail(t, 3)
	ctx := context.Background()
	d, err := tr.Digest(ctx)
	if err != nil || d == nil || d.Seq != 3 {
		t.Fatalf("digest %+v %v", d, err)
	}
	if !ed25519.Verify(pub, DigestMessage(*d), d.Signature) {
		t.Fatal("digest signature does not verify")
	}
	if d2, err := tr.Digest(ctx); d2 != nil || err != nil {
		t.Errorf("a second digest without new records: %+v %v", d2, err)
	}
	// A restarted server finds the tail from the store.
	tr2 := NewTrail(st, tr.key, nil)
	tr2.Record(ctx, &Event{EventName: "After"})
	if d3, err := tr2.Digest(ctx); err != nil || d3 == nil || d3.Seq != 4 {
		t.Errorf("after restart: %+v %v", d3, err)
	}
	tr3 := NewTrail(st, tr.key, nil)
	if d4, err := tr3.Digest(ctx); d4 != nil || err != nil {
		t.Errorf("fresh trail re-signed a covered tail: %+v %v", d4, err)
	}
}

func TestRunDigestsSignsOnShutdown(t *testing.T) {
	tr, st, _ := newTrail(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.RunDigests(ctx, time.Hour); close(done) }()
	cancel()
	<-done
	if len(st.digests) != 1 || st.digests[0].Seq != 2 {
		t.Errorf("digests after shutdown: %+v", st.digests)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	type tamper func(st *memStore, key ed25519.PrivateKey)
	rechain := func(st *memStore, from int) {
		for i := from; i < len(st.recs); i++ {
			prev := postern.GenesisHash
			if i > 0 {
				prev = st.recs[i-1].Hash
			}
			st.recs[i].PrevHash = prev
			st.recs[i].Hash = postern.ChainHash(prev, st.recs[i].Seq, st.recs[i].Body)
		}
	}
	tests := []struct {
		name    string
		tamper  tamper
		wantSeq int64
		want    string
	}{
		{"altered body", func(st *memStore, _ ed25519.PrivateKey) {
			st.recs[4].Body = []byte(strings.Replace(string(st.recs[4].Body), "Call4", "Call9", 1))
		}, 5, "altered"},
		{"altered hash", func(st *memStore, _ ed25519.PrivateKey) { st.recs[2].Hash[0] ^= 1 }, 3, "altered"},
		{"removed middle", func(st *memStore, _ ed25519.PrivateKey) {
			st.recs = append(st.recs[:3], st.recs[4:]...)
		}, 4, "missing"},
		{"removed tail after digest", func(st *memStore, _ ed25519.PrivateKey) { st.recs = st.recs[:7] }, 10, "removed from the end"},
		{"inserted", func(st *memStore, _ ed25519.PrivateKey) {
			fake := st.recs[5]
			fake.EventID = "fake"
			st.recs = append(st.recs[:6], append([]postern.AuditRecord{fake}, st.recs[6:]...)...)
		}, 6, "repeats"},
		{"inserted and renumbered", func(st *memStore, _ ed25519.PrivateKey) {
			fake := st.recs[5]
			fake.Body = []byte(`{"eventID":"fake"}`)
			fake.EventID = "fake"
			st.recs = append(st.recs[:6], append([]postern.AuditRecord{fake}, st.recs[6:]...)...)
			for i := range st.recs {
				st.recs[i].Seq = int64(i + 1)
			}
			rechain(st, 6)
		}, 10, "rewritten"},
		{"swapped", func(st *memStore, _ ed25519.PrivateKey) {
			st.recs[3], st.recs[4] = st.recs[4], st.recs[3]
		}, 4, "backwards"},
		{"rewritten consistently", func(st *memStore, _ ed25519.PrivateKey) {
			st.recs[1].Body = []byte(strings.Replace(string(st.recs[1].Body), "Call1", "CallX", 1))
			rechain(st, 1)
		}, 10, "rewritten"},
		{"forged digest", func(st *memStore, _ ed25519.PrivateKey) { st.digests[0].Signature[0] ^= 1 }, 10, "forged"},
		{"digest by another key", func(st *memStore, _ ed25519.PrivateKey) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			d := st.digests[0]
			d.Signature = ed25519.Sign(other, DigestMessage(d))
			st.digests[0] = d
		}, 10, "forged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, st, pub := newTrail(t, 10)
			if _, err := tr.Digest(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(ctx, st, pub)
			if err != nil || !rep.OK() {
				t.Fatalf("clean trail: %v %s", err, rep)
			}
			tt.tamper(st, tr.key)
			rep, err = Verify(ctx, st, pub)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %s", rep)
			}
			found := false
			for _, p := range rep.Problems {
				if p.Seq == tt.wantSeq && strings.Contains(p.What, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem at record %d mentioning %q:\n%s", tt.wantSeq, tt.want, rep)
			}
		})
	}
}

func TestVerifyCleanTrailAcrossPages(t *testing.T) {
	tr, st, pub := newTrail(t, 2500)
	ctx := context.Background()
	tr.Digest(ctx)
	tr.Record(ctx, &Event{EventName: "Late"})
	rep, err := Verify(ctx, st, pub)
	if err != nil || !rep.OK() || rep.Records != 2501 || rep.LastSeq != 2501 {
		t.Fatalf("%v %s", err, rep)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "2501 to 2501") {
		t.Errorf("uncovered tail not reported: %v", rep.Warnings)
	}
}

func BenchmarkRecord(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tr := NewTrail(&memStore{}, priv, nil)
	ctx := context.Background()
	ev := Event{EventName: "SendSSHPublicKey", RequestParameters: map[string]any{"instanceId": "i-0123456789abcdef0", "instanceOSUser": "ec2-user"}}
	for b.Loop() {
		e := ev
		tr.Record(ctx, &e)
	}
}

func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	st := &memStore{}
	tr := NewTrail(st, priv, nil)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		tr.Record(ctx, &Event{EventName: "X"})
	}
	tr.Digest(ctx)
	for b.Loop() {
		Verify(ctx, st, pub)
	}
}
