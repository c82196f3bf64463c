package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/atomicfile"
)

// DefaultDigestInterval is how often RunDigests signs when it is given no
// interval.
const DefaultDigestInterval = time.Minute

// digestTimeout bounds the final digest RunDigests signs on its way out.
const digestTimeout = 10 * time.Second

// DigestMessage returns the exact bytes a digest's signature covers:
//
//	postern-audit-digest-v1
//	seq=<decimal>
//	hash=<lowercase hex>
//	time=<Unix nanoseconds, decimal>
//	key=<KeyID>
//
// each line ending in a newline. Every field but the last is free of
// newlines by construction, so no two digests share a message.
func DigestMessage(d postern.AuditDigest) []byte {
	b := make([]byte, 0, 160)
	b = append(b, "postern-audit-digest-v1\nseq="...)
	b = strconv.AppendInt(b, d.Seq, 10)
	b = append(b, "\nhash="...)
	b = fmt.Appendf(b, "%x", d.Hash)
	b = append(b, "\ntime="...)
	b = strconv.AppendInt(b, d.Time.UnixNano(), 10)
	b = append(b, "\nkey="...)
	b = append(b, d.KeyID...)
	return append(b, '\n')
}

// sign fills d.KeyID and d.Signature.
func (t *Trail) sign(d *postern.AuditDigest) {
	d.KeyID = t.keyID
	d.Signature = ed25519.Sign(t.key, DigestMessage(*d))
}

// ours reports whether d carries a valid signature by the Trail's key.
func (t *Trail) ours(d *postern.AuditDigest) bool {
	return d.KeyID == t.keyID && ed25519.Verify(t.pub, DigestMessage(*d), d.Signature)
}

// errChainBroken marks a chain that does not extend the last digest.
var errChainBroken = errors.New("the audit chain does not extend the last signed digest")

// Digest signs the newest record of the trail (its Seq and Hash) with the
// current time and stores the digest. It returns nil, nil when a digest by
// the Trail's key covers the newest record already (no record was appended
// since), whichever replica signed it.
//
// Before signing, Digest checks that the records since the previous digest
// it signed extend that digest's chain unbroken and unaltered, and that the
// newest record this Trail appended still has the hash it had then (so a
// chain recomputed after tampering is caught here too, as long as the
// server runs). A broken chain is still signed — refusing would let
// whoever broke it stop the signing of everything after — and Digest then
// returns the new digest together with a KindInternal error wrapping
// errChainBroken that names the record; the break stays visible to Verify.
func (t *Trail) Digest(ctx context.Context) (*postern.AuditDigest, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	newest, err := t.st.LookupAudit(ctx, postern.AuditQuery{Limit: 1})
	if err != nil {
		return nil, postern.Internal(err, "read the newest audit record")
	}
	if len(newest) == 0 {
		return nil, nil
	}
	tip := newest[0]
	covering, err := t.st.ListAuditDigests(ctx, tip.Seq)
	if err != nil {
		return nil, postern.Internal(err, "read the audit digests")
	}
	for i := range covering {
		if d := &covering[i]; d.Seq == tip.Seq && bytes.Equal(d.Hash, tip.Hash) && t.ours(d) {
			t.remember(d)
			return nil, nil
		}
	}
	if err := t.restoreKept(ctx); err != nil {
		return nil, err
	}
	prev := t.last
	if prev == nil {
		if prev, err = t.findLast(ctx, tip.Seq); err != nil {
			return nil, err
		}
	}
	problem, err := t.checkExtends(ctx, prev, &tip)
	if err != nil {
		return nil, err
	}
	d := &postern.AuditDigest{
		Seq:  tip.Seq,
		Hash: bytes.Clone(tip.Hash),
		// Stores keep times to the microsecond (PostgreSQL) or coarser;
		// the signed nanoseconds must survive the round trip.
		Time: t.now().UTC().Truncate(time.Millisecond),
	}
	t.sign(d)
	if err := t.st.PutAuditDigest(ctx, d); err != nil {
		return nil, postern.Internal(err, "store the audit digest")
	}
	t.last = d
	t.keep(d)
	if problem != nil {
		return d, postern.Internal(fmt.Errorf("%w: %s", errChainBroken, problem), "the audit chain is broken at record %d", problem.Seq)
	}
	return d, nil
}

// KeepNewestDigest has the Trail keep a copy of each digest it signs in
// the file at path, outside the store. Digests live beside the records
// they cover: whoever can rewrite the records can delete the newest
// digests too, and a server would then sign over the rewrite. When the
// store no longer holds the kept digest, the next Digest puts it back
// before it checks the chain, so the rewrite is reported, there and by
// Verify, instead of being signed over.
func (t *Trail) KeepNewestDigest(path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kept = path
}

// keep writes d to the kept copy; a failure is logged, not returned: the
// digest is stored already.
func (t *Trail) keep(d *postern.AuditDigest) {
	if t.kept == "" {
		return
	}
	b, err := json.Marshal(d)
	if err == nil {
		err = atomicfile.Write(t.kept, b, 0o600)
	}
	if err != nil {
		t.log.Error("cannot keep a copy of the audit digest", "path", t.kept, "err", err)
	}
}

// restoreKept puts the kept digest back into the store when the store no
// longer holds it, and makes it the previous digest when it is newer.
func (t *Trail) restoreKept(ctx context.Context) error {
	if t.kept == "" {
		return nil
	}
	b, err := os.ReadFile(t.kept)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var d postern.AuditDigest
	if err == nil {
		err = json.Unmarshal(b, &d)
	}
	if err != nil || !t.ours(&d) {
		t.log.Error("the kept copy of the newest audit digest is unreadable or not signed by this key", "path", t.kept, "err", err)
		return nil
	}
	stored, err := t.st.ListAuditDigests(ctx, d.Seq)
	if err != nil {
		return postern.Internal(err, "read the audit digests")
	}
	for _, s := range stored {
		if s.Seq == d.Seq && bytes.Equal(s.Signature, d.Signature) {
			t.remember(&d)
			return nil
		}
	}
	t.log.Error("the newest audit digest this server signed is gone from the store; putting it back",
		"seq", d.Seq, "signed", d.Time.Format(time.RFC3339Nano))
	if err := t.st.PutAuditDigest(ctx, &d); err != nil {
		return postern.Internal(err, "put back the audit digest")
	}
	t.remember(&d)
	return nil
}

// remember makes d the previous digest if it is newer than the one known.
func (t *Trail) remember(d *postern.AuditDigest) {
	if t.last == nil || d.Time.After(t.last.Time) {
		c := *d
		t.last = &c
	}
}

// findLast returns the newest digest (by time) signed by the Trail's key,
// or nil, for a Trail that has not signed one yet. Digests at or after tip
// are asked for first, then ever wider windows before tip, until one holds
// a digest of ours at or before tip, so that it costs a few small queries
// however long the trail is. (A digest past tip is left by a cut-off
// tail; a newer one before it may have been signed since.)
func (t *Trail) findLast(ctx context.Context, tip int64) (*postern.AuditDigest, error) {
	from := tip
	for step := int64(1024); ; step *= 2 {
		ds, err := t.st.ListAuditDigests(ctx, from)
		if err != nil {
			return nil, postern.Internal(err, "read the audit digests")
		}
		var last *postern.AuditDigest
		within := false
		for i := range ds {
			d := &ds[i]
			if !t.ours(d) {
				continue
			}
			within = within || d.Seq <= tip
			if last == nil || d.Time.After(last.Time) || d.Time.Equal(last.Time) && d.Seq > last.Seq {
				last = d
			}
		}
		if within || from <= 1 {
			return last, nil
		}
		from = max(from-step, 1)
	}
}

// checkExtends checks the records after prev (from the first, when prev is
// nil) up to tip, and returns the first thing wrong with them, or nil. An
// error means the store could not be read.
func (t *Trail) checkExtends(ctx context.Context, prev *postern.AuditDigest, tip *postern.AuditRecord) (*Problem, error) {
	c := chain{hash: postern.GenesisHash}
	if prev != nil {
		switch {
		case prev.Seq > tip.Seq:
			return &Problem{Seq: prev.Seq, Kind: Truncated, What: fmt.Sprintf(
				"the digest of %s covers records up to %d, but the trail ends at %d", stamp(prev.Time), prev.Seq, tip.Seq)}, nil
		case prev.Seq == tip.Seq:
			return &Problem{Seq: tip.Seq, EventID: tip.EventID, Kind: Rewritten, What: fmt.Sprintf(
				"its hash is not the one the digest of %s signed", stamp(prev.Time))}, nil
		}
		c = chain{seq: prev.Seq, hash: prev.Hash}
	}
	t.amu.Lock()
	mine := t.appended
	t.amu.Unlock()
	var first *Problem
	c.problem = func(p Problem) {
		if first == nil {
			first = &p
		}
	}
	for c.seq < tip.Seq && first == nil {
		recs, err := t.st.ScanAudit(ctx, c.seq+1, pageSize)
		if err != nil {
			return nil, postern.Internal(err, "read the audit trail")
		}
		before := c.seq
		for i := range recs {
			r := &recs[i]
			if r.Seq > tip.Seq || first != nil {
				break
			}
			c.next(r)
			if r.Seq == mine.seq && !bytes.Equal(r.Hash, mine.hash) && first == nil {
				c.problem(Problem{Seq: r.Seq, EventID: r.EventID, Kind: Rewritten,
					What: "its hash is not the one it had when this server appended it: it or a record before it was altered"})
			}
		}
		if c.seq == before {
			break // nothing more up to tip: reported below
		}
	}
	if first == nil && c.seq != tip.Seq {
		first = &Problem{Seq: c.seq + 1, Kind: Missing, What: fmt.Sprintf("the trail ends at %d, before its newest record %d", c.seq, tip.Seq)}
	}
	if first == nil && !bytes.Equal(c.hash, tip.Hash) {
		first = &Problem{Seq: tip.Seq, EventID: tip.EventID, Kind: Altered, What: "the newest record changed while it was checked"}
	}
	return first, nil
}

// RunDigests signs a digest at once, then every interval
// (DefaultDigestInterval when interval is not positive), until ctx is done;
// then it signs a last one, so that a clean shutdown leaves no record
// uncovered. Failures are logged: a trail that cannot be signed must not
// stop the server, and Verify will report what is uncovered.
func (t *Trail) RunDigests(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultDigestInterval
	}
	t.digestAndLog(ctx)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), digestTimeout)
			t.digestAndLog(fctx)
			cancel()
			return
		case <-tick.C:
			t.digestAndLog(ctx)
		}
	}
}

func (t *Trail) digestAndLog(ctx context.Context) {
	d, err := t.Digest(ctx)
	if d != nil {
		t.log.Debug("audit digest signed", "seq", d.Seq, "hash", fmt.Sprintf("%x", d.Hash[:8]), "keyId", d.KeyID)
	}
	switch {
	case errors.Is(err, errChainBroken):
		t.log.Error("audit chain broken; run postern audit verify", "err", err)
	case err != nil:
		t.log.Error("audit digest failed", "err", err)
	}
}
