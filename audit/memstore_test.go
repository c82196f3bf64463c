package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"github.com/postern-dev/postern"
)

// memStore is an in-memory Store that chains records as the real stores
// do. Tests tamper with recs and digests directly. ScanAudit returns
// records in slice order (not sorted), so that a test can also play a
// source that serves records out of order.
type memStore struct {
	mu      sync.Mutex
	recs    []postern.AuditRecord
	digests []postern.AuditDigest
	fail    error                    // returned by every call when set
	signed  chan postern.AuditDigest // receives each stored digest, when set
	listed  []int64                  // the from argument of each ListAuditDigests
}

var _ Store = (*memStore)(nil)

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
	m.recs = append(m.recs, clone(*r))
	return nil
}

func (m *memStore) LookupAudit(_ context.Context, q postern.AuditQuery) ([]postern.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	limit := q.Limit
	if limit == 0 {
		limit = 50
	}
	var out []postern.AuditRecord
	for i := len(m.recs) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, clone(m.recs[i]))
	}
	return out, nil
}

func (m *memStore) ScanAudit(_ context.Context, from int64, limit int) ([]postern.AuditRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []postern.AuditRecord
	for _, r := range m.recs {
		if r.Seq >= from && len(out) < limit {
			out = append(out, clone(r))
		}
	}
	return out, nil
}

func (m *memStore) PutAuditDigest(_ context.Context, d *postern.AuditDigest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.digests = append(m.digests, *d)
	if m.signed != nil {
		m.signed <- *d
	}
	return nil
}

func (m *memStore) ListAuditDigests(_ context.Context, from int64) ([]postern.AuditDigest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	m.listed = append(m.listed, from)
	var out []postern.AuditDigest
	for _, d := range m.digests {
		if d.Seq >= from {
			out = append(out, d)
		}
	}
	return out, nil
}

// lastDigest returns the newest stored digest.
func (m *memStore) lastDigest(t *testing.T) postern.AuditDigest {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.digests) == 0 {
		t.Fatal("no digest was stored")
	}
	return m.digests[len(m.digests)-1]
}

// rechain recomputes PrevHash and Hash of recs[from:], as someone who
// rewrites the trail would.
func (m *memStore) rechain(from int) {
	for i := from; i < len(m.recs); i++ {
		prev := postern.GenesisHash
		if i > 0 {
			prev = m.recs[i-1].Hash
		}
		m.recs[i].PrevHash = prev
		m.recs[i].Hash = postern.ChainHash(prev, m.recs[i].Seq, m.recs[i].Body)
	}
}

// clone copies r deeply, so that callers cannot change the store.
func clone(r postern.AuditRecord) postern.AuditRecord {
	r.Body = bytes.Clone(r.Body)
	r.PrevHash = bytes.Clone(r.PrevHash)
	r.Hash = bytes.Clone(r.Hash)
	r.Resources = append([]string(nil), r.Resources...)
	return r
}

// newTestTrail returns a Trail over a fresh memStore holding n records
// named Call0, Call1, ….
func newTestTrail(t testing.TB, n int) (*Trail, *memStore, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	tr := NewTrail(st, priv, nil)
	record(t, tr, n)
	return tr, st, pub
}

// record appends n more events to tr.
func record(t testing.TB, tr *Trail, n int) {
	t.Helper()
	ctx := context.Background()
	st := tr.st.(*memStore)
	st.mu.Lock()
	base := len(st.recs)
	st.mu.Unlock()
	for i := range n {
		_, err := tr.Record(ctx, &Event{
			EventSource: "ec2-instance-connect.amazonaws.com",
			EventName:   fmt.Sprintf("Call%d", base+i),
			UserIdentity: UserIdentity{
				Type: "IAMUser", UserName: "alice", AccessKeyID: "AKIAIOSFODNN7EXAMPLE",
			},
			RequestParameters: map[string]any{"instanceId": "i-0123456789abcdef0", "instanceOSUser": "ec2-user"},
			Resources:         []Resource{{ARN: "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
