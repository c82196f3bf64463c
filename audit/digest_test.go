package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

func TestDigestSignsTheNewestRecord(t *testing.T) {
	tr, st, pub := newTestTrail(t, 0)
	ctx := context.Background()
	if d, err := tr.Digest(ctx); d != nil || err != nil {
		t.Fatalf("an empty trail was digested: %+v %v", d, err)
	}
	record(t, tr, 3)
	d, err := tr.Digest(ctx)
	if err != nil || d == nil {
		t.Fatalf("digest %+v %v", d, err)
	}
	if d.Seq != 3 || !bytes.Equal(d.Hash, st.recs[2].Hash) {
		t.Errorf("digest covers %d %x, want 3 %x", d.Seq, d.Hash, st.recs[2].Hash)
	}
	if d.KeyID != keyfile.KeyID(pub) || d.KeyID != tr.KeyID() || !tr.PublicKey().Equal(pub) {
		t.Errorf("key id %q, want %q", d.KeyID, keyfile.KeyID(pub))
	}
	if !ed25519.Verify(pub, DigestMessage(*d), d.Signature) {
		t.Error("the signature does not verify")
	}
	if d.Time.Location() != time.UTC || !d.Time.Equal(d.Time.Truncate(time.Millisecond)) || time.Since(d.Time) > time.Minute {
		t.Errorf("digest time %v", d.Time)
	}
	if got := st.lastDigest(t); got.Seq != 3 || !bytes.Equal(got.Signature, d.Signature) {
		t.Errorf("stored %+v", got)
	}
	if d2, err := tr.Digest(ctx); d2 != nil || err != nil {
		t.Errorf("a second digest without new records: %+v %v", d2, err)
	}
	if len(st.digests) != 1 {
		t.Errorf("%d digests stored, want 1", len(st.digests))
	}
}

func TestDigestAcrossRestartsAndReplicas(t *testing.T) {
	tr, st, pub := newTestTrail(t, 3)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	// A restarted server, or a second replica, knows only the store.
	other := NewTrail(st, tr.key, nil)
	if d, err := other.Digest(ctx); d != nil || err != nil {
		t.Errorf("re-signed a covered tail: %+v %v", d, err)
	}
	record(t, tr, 1)
	if d, err := other.Digest(ctx); err != nil || d == nil || d.Seq != 4 {
		t.Errorf("the other trail did not cover a record the first appended: %+v %v", d, err)
	}
	if d, err := tr.Digest(ctx); d != nil || err != nil {
		t.Errorf("the first trail re-signed what the other covered: %+v %v", d, err)
	}
	if rep, err := Verify(ctx, st, pub); err != nil || !rep.OK() || len(rep.Warnings) != 0 {
		t.Errorf("%v\n%s", err, rep)
	}
}

func TestDigestFindsTheLastDigestInFewQueries(t *testing.T) {
	tr, st, pub := newTestTrail(t, 100)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	record(t, tr, 4900)
	// A digest by another key after it is not the one to extend.
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	foreign := postern.AuditDigest{Seq: 4000, Hash: make([]byte, 32), Time: time.Now(), KeyID: keyfile.KeyID(otherKey.Public().(ed25519.PublicKey))}
	foreign.Signature = ed25519.Sign(otherKey, DigestMessage(foreign))
	st.digests = append(st.digests, foreign)

	restarted := NewTrail(st, tr.key, nil)
	st.listed = nil
	d, err := restarted.Digest(ctx)
	if err != nil || d == nil || d.Seq != 5000 {
		t.Fatalf("%+v %v", d, err)
	}
	if len(st.listed) > 5 || st.listed[0] != 5000 {
		t.Errorf("looked for the last digest from %v", st.listed)
	}
	rep, err := Verify(ctx, st, pub)
	if err != nil || rep.CoveredSeq != 5000 {
		t.Fatalf("%v\n%s", err, rep)
	}
	// Verify does flag the foreign digest.
	if len(rep.Problems) != 1 || rep.Problems[0].Seq != 4000 || rep.Problems[0].Kind != BadDigest {
		t.Errorf("%s", rep)
	}
}

func TestDigestAfterKeyRotation(t *testing.T) {
	tr, st, _ := newTestTrail(t, 3)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	record(t, tr, 2)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	rotated := NewTrail(st, priv, nil)
	d, err := rotated.Digest(ctx)
	if err != nil || d == nil || d.Seq != 5 || d.KeyID != keyfile.KeyID(pub) {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestDigestReportsABrokenChain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		digest   int // records before the first digest
		more     int // records after it
		tamper   func(st *memStore)
		wantSeq  string
		recovers bool // the fake store can append sensibly afterwards
	}{
		{"altered after the digest", 3, 3, func(st *memStore) {
			st.recs[4].Body = bytes.Replace(st.recs[4].Body, []byte("Call4"), []byte("Call9"), 1)
		}, "record 5", true},
		{"removed after the digest", 3, 3, func(st *memStore) {
			st.recs = append(st.recs[:4], st.recs[5:]...)
		}, "record 5", false},
		{"reordered after the digest", 3, 3, func(st *memStore) {
			st.recs[3], st.recs[4] = st.recs[4], st.recs[3]
		}, "record 4", true},
		{"recomputed after the digest", 3, 3, func(st *memStore) {
			st.recs[4].Body = bytes.Replace(st.recs[4].Body, []byte("Call4"), []byte("Call9"), 1)
			st.recs[4].EventName = "Call9"
			st.rechain(4)
		}, "record 6", true},
		{"cut below the digest", 5, 0, func(st *memStore) { st.recs = st.recs[:3] }, "up to 5", true},
		{"digested record altered", 3, 0, func(st *memStore) { st.recs[2].Hash[0] ^= 1 }, "record 3", true},
		{"altered before any digest", 0, 3, func(st *memStore) { st.recs[1].Body[10] ^= 1 }, "record 2", true},
		{"link to the digest broken", 3, 2, func(st *memStore) {
			// Record 4 and after are consistent, but not with the digest.
			st.recs[3].PrevHash = bytes.Repeat([]byte{1}, 32)
			st.recs[3].Hash = postern.ChainHash(st.recs[3].PrevHash, 4, st.recs[3].Body)
			st.rechain(4)
		}, "record 4", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, st, _ := newTestTrail(t, tc.digest)
			ctx := context.Background()
			if tc.digest > 0 {
				if _, err := tr.Digest(ctx); err != nil {
					t.Fatal(err)
				}
			}
			record(t, tr, tc.more)
			before := len(st.digests)
			tc.tamper(st)
			d, err := tr.Digest(ctx)
			if !postern.IsKind(err, postern.KindInternal) || !errors.Is(err, errChainBroken) || !strings.Contains(err.Error(), tc.wantSeq) {
				t.Errorf("err = %v, want an internal error naming %s", err, tc.wantSeq)
			}
			// Signed all the same, so that whoever broke the chain cannot
			// stop the signing.
			tip := st.recs[len(st.recs)-1]
			if d == nil || d.Seq != tip.Seq || !bytes.Equal(d.Hash, tip.Hash) || len(st.digests) != before+1 {
				t.Fatalf("digest %+v, %d stored before, %d after", d, before, len(st.digests))
			}
			if !tc.recovers {
				return
			}
			// The break is reported once: the next digest extends this one.
			record(t, tr, 1)
			if d, err := tr.Digest(ctx); err != nil || d == nil || d.Seq != tip.Seq+1 {
				t.Errorf("the next digest: %+v %v", d, err)
			}
		})
	}
}

func TestDigestAfterRestartCatchesARewrite(t *testing.T) {
	// A restarted server has no memory of what it appended, but a chain
	// recomputed from before its last digest no longer extends it.
	tr, st, pub := newTestTrail(t, 3)
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	record(t, tr, 2)
	st.recs[1].Body = bytes.Replace(st.recs[1].Body, []byte("Call1"), []byte("Call7"), 1)
	st.recs[1].EventName = "Call7"
	st.rechain(1)
	restarted := NewTrail(st, tr.key, nil)
	if _, err := restarted.Digest(ctx); !errors.Is(err, errChainBroken) {
		t.Errorf("err = %v: the digest at 3 no longer links", err)
	}
	rep, err := Verify(ctx, st, pub)
	if err != nil || rep.OK() || rep.Problems[0].Seq != 3 || rep.Problems[0].Kind != Rewritten {
		t.Errorf("%v\n%s", err, rep)
	}
}

func TestDigestStoreErrors(t *testing.T) {
	tr, st, _ := newTestTrail(t, 2)
	st.fail = errors.New("database is locked")
	if _, err := tr.Digest(context.Background()); !postern.IsKind(err, postern.KindInternal) {
		t.Errorf("err = %v", err)
	}
}

func TestDigestMessage(t *testing.T) {
	d := postern.AuditDigest{
		Seq:   42,
		Hash:  []byte{0xde, 0xad, 0xbe, 0xef},
		Time:  time.Unix(1700000000, 123456789),
		KeyID: "SHA256:abc",
	}
	want := "postern-audit-digest-v1\nseq=42\nhash=deadbeef\ntime=1700000000123456789\nkey=SHA256:abc\n"
	if got := string(DigestMessage(d)); got != want {
		t.Errorf("DigestMessage = %q, want %q", got, want)
	}
	d.Signature = []byte("ignored")
	if got := string(DigestMessage(d)); got != want {
		t.Error("the signature is part of the message")
	}
	for name, change := range map[string]func(*postern.AuditDigest){
		"seq":  func(d *postern.AuditDigest) { d.Seq++ },
		"hash": func(d *postern.AuditDigest) { d.Hash = []byte{0xde, 0xad, 0xbe, 0xee} },
		"time": func(d *postern.AuditDigest) { d.Time = d.Time.Add(time.Nanosecond) },
		"key":  func(d *postern.AuditDigest) { d.KeyID = "SHA256:abd" },
	} {
		c := d
		change(&c)
		if string(DigestMessage(c)) == want {
			t.Errorf("changing the %s leaves the message as it was", name)
		}
	}
}

func TestRunDigestsSignsAtStartAndOnShutdown(t *testing.T) {
	tr, st, _ := newTestTrail(t, 2)
	st.signed = make(chan postern.AuditDigest, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.RunDigests(ctx, time.Hour)
	}()
	if d := <-st.signed; d.Seq != 2 {
		t.Errorf("first digest covers %d, want 2", d.Seq)
	}
	record(t, tr, 1)
	cancel()
	<-done
	if d := st.lastDigest(t); d.Seq != 3 {
		t.Errorf("final digest covers %d, want 3", d.Seq)
	}
}

func TestRunDigestsTicks(t *testing.T) {
	tr, st, _ := newTestTrail(t, 1)
	st.signed = make(chan postern.AuditDigest, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.RunDigests(ctx, time.Millisecond)
	}()
	defer func() { cancel(); <-done }()
	if d := <-st.signed; d.Seq != 1 {
		t.Fatalf("first digest covers %d", d.Seq)
	}
	record(t, tr, 1)
	timeout := time.After(time.Minute) // a hang guard, not synchronization
	for {
		select {
		case d := <-st.signed:
			if d.Seq == 2 {
				return
			}
		case <-timeout:
			t.Fatal("no digest covered the new record")
		}
	}
}

func TestRunDigestsLogsFailures(t *testing.T) {
	tr, st, _ := newTestTrail(t, 1)
	var logs bytes.Buffer
	tr.log = slog.New(slog.NewTextHandler(&logs, nil))
	st.fail = errors.New("database is locked")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tr.RunDigests(ctx, time.Hour) // returns: ctx is done
	if n := strings.Count(logs.String(), "audit digest failed"); n != 2 {
		t.Errorf("logged %d failures, want 2 (at start, at shutdown):\n%s", n, logs.String())
	}
}

func TestRunDigestsLogsABrokenChain(t *testing.T) {
	tr, st, _ := newTestTrail(t, 3)
	var logs bytes.Buffer
	tr.log = slog.New(slog.NewTextHandler(&logs, nil))
	st.recs[1].Body[10] ^= 1
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tr.RunDigests(ctx, time.Hour)
	if n := strings.Count(logs.String(), "audit chain broken"); n != 1 || !strings.Contains(logs.String(), "record 2") {
		t.Errorf("logged %d breaks, want 1 naming record 2:\n%s", n, logs.String())
	}
	if len(st.digests) != 1 {
		t.Errorf("%d digests, want 1", len(st.digests))
	}
}

func TestDigestAfterTruncationAndRestart(t *testing.T) {
	tr, st, _ := newTestTrail(t, 5)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	ctx := context.Background()
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	st.recs = st.recs[:3]
	if _, err := tr.Digest(ctx); !errors.Is(err, errChainBroken) {
		t.Fatalf("err = %v", err)
	}
	record(t, tr, 1)
	// A restarted server extends the digest it signed last (at 3), not
	// the one left past the cut (at 5).
	restarted := NewTrail(st, tr.key, nil)
	restarted.now = tr.now
	if d, err := restarted.Digest(ctx); err != nil || d == nil || d.Seq != 4 {
		t.Errorf("%+v %v", d, err)
	}
}

// Whoever can rewrite the records can delete the newest digests too; the
// copy a Trail keeps outside the store puts the newest one back, so that a
// restarted server reports the rewrite instead of signing over it, and
// Verify sees it.
func TestKeptDigestOutlivesItsDeletion(t *testing.T) {
	ctx := context.Background()
	kept := filepath.Join(t.TempDir(), "audit-digest.json")
	tr, st, pub := newTestTrail(t, 5)
	tr.KeepNewestDigest(kept)
	for range 2 {
		if _, err := tr.Digest(ctx); err != nil {
			t.Fatal(err)
		}
		record(t, tr, 3)
	}
	// The newest digest covers record 8; delete it and rewrite record 7,
	// which only it covered, with the chain recomputed after it.
	st.digests = st.digests[:1]
	st.recs[6].Body = bytes.Replace(st.recs[6].Body, []byte("Call6"), []byte("CallX"), 1)
	st.recs[6].EventName = "CallX"
	st.rechain(6)

	restarted := NewTrail(st, tr.key, nil)
	restarted.KeepNewestDigest(kept)
	if _, err := restarted.Digest(ctx); !errors.Is(err, errChainBroken) {
		t.Errorf("the restarted server's Digest = %v, want the chain reported broken", err)
	}
	rep, err := Verify(ctx, st, pub)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range rep.Problems {
		found = found || p.Seq == 8 && p.Kind == Rewritten
	}
	if rep.OK() || !found {
		t.Errorf("want record 8 reported rewritten:\n%s", rep)
	}
}
