package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/postern-dev/postern"
)

// Group commit. Every API call appends an audit record before it answers,
// so appends are on the hot path. Instead of one transaction per record,
// AppendAudit queues the record for a single writer goroutine, which takes
// whatever has queued up while its previous commit ran and appends it all
// in one transaction. Each caller is answered only after that commit: a
// record is never reported as stored before it is, and a failed commit
// fails every caller in its batch.

// appendReq is one AppendAudit waiting for its batch to commit.
type appendReq struct {
	ctx  context.Context
	rec  *postern.AuditRecord
	done chan error // buffered: the writer never blocks on a caller
}

// chainTail is the end of the chain as the audit writer last committed it.
// It is read from the database once and then kept in memory; after a
// failed commit it is read again, since the failure may have left the
// database anywhere.
type chainTail struct {
	known bool
	seq   int64
	hash  []byte
}

func errClosed() error {
	return &postern.Error{Kind: postern.KindUnavailable, Message: "the audit trail is closed"}
}

// AppendAudit assigns rec.Seq, rec.PrevHash and rec.Hash and stores the
// record; it returns once the record is committed. Those fields are set
// only on success. When ctx ends before the record joins a batch it is not
// stored; once in a batch, its commit is awaited whatever ctx does, so the
// answer is always the truth.
func (s *Store) AppendAudit(ctx context.Context, rec *postern.AuditRecord) error {
	if rec == nil {
		return postern.Invalidf("no audit record")
	}
	// Check what could fail on its own here, so that one bad record
	// cannot fail a whole batch.
	if _, err := timeArg(rec.EventTime); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return dbErr(ctx, err, "append an audit record")
	}
	req := &appendReq{ctx: ctx, rec: rec, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed()
	}
	select {
	case s.appends <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return dbErr(ctx, ctx.Err(), "append an audit record")
	}
	return <-req.done
}

// auditWriter is the one goroutine that appends to the chain. It returns
// when Close has closed the queue and everything queued before is
// answered.
func (s *Store) auditWriter() {
	defer close(s.done)
	batch := make([]*appendReq, 0, s.batchMax)
	for req := range s.appends {
		batch = append(batch[:0], req)
	fill:
		for len(batch) < s.batchMax {
			select {
			case r, ok := <-s.appends:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch appends the batch's live records in one transaction and
// answers every caller.
func (s *Store) commitBatch(batch []*appendReq) {
	live := make([]*appendReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			// The caller gave up before its record was written.
			r.done <- dbErr(r.ctx, err, "append an audit record")
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	links, err := s.appendRecords(live)
	if err != nil {
		s.tail = chainTail{}
		err = postern.Internal(err, "database: cannot append audit records")
		for _, r := range live {
			r.done <- err
		}
		return
	}
	for i, r := range live {
		r.rec.Seq, r.rec.PrevHash, r.rec.Hash = links[i].seq, links[i].prev, links[i].hash
		r.done <- nil
	}
}

// link is what a committed record learns about its place in the chain.
type link struct {
	seq        int64
	prev, hash []byte
}

// The statements a batch runs: one row each, prepared once on the writer,
// and the same with several rows, built for the batch at hand.
const (
	insertRecordHead = `INSERT INTO audit_records
		(seq, event_id, event_time, event_name, event_source, user_name, access_key_id, error_code, resources, body, prev_hash, hash)
		VALUES `
	recordColumns      = 12
	insertRecordSQL    = insertRecordHead + `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertResourceHead = `INSERT INTO audit_resources (resource, seq) VALUES `
	insertResourceTail = ` ON CONFLICT DO NOTHING`
	insertResourceSQL  = insertResourceHead + `(?, ?)` + insertResourceTail
	// recordsPerInsert bounds the rows of one statement (SQLite allows
	// 32,766 parameters in one; PostgreSQL 65,535).
	recordsPerInsert = 256
)

// insertRows inserts args, columns values a row, with as few statements
// as the chunk size allows: the prepared one-row statement one for a
// single row, else head, one (?, …) group a row, and tail.
func insertRows(ctx context.Context, tx *sql.Tx, one *sql.Stmt, head, tail string, columns int, args []any) error {
	group := "(?" + strings.Repeat(", ?", columns-1) + ")"
	for len(args) > 0 {
		n := min(len(args)/columns, recordsPerInsert)
		chunk := args[:n*columns]
		args = args[n*columns:]
		if n == 1 {
			if _, err := tx.StmtContext(ctx, one).ExecContext(ctx, chunk...); err != nil {
				return err
			}
			continue
		}
		query := head + group + strings.Repeat(", "+group, n-1) + tail
		if _, err := tx.ExecContext(ctx, query, chunk...); err != nil {
			return err
		}
	}
	return nil
}

// appendRecords writes reqs after the chain's tail in one transaction.
// The writer runs it with a background context: a caller's cancellation
// must not abort a batch that holds other callers' records.
func (s *Store) appendRecords(reqs []*appendReq) (_ []link, err error) {
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	tail := s.tail
	if s.d.SharedChain {
		// Other processes append too: wait for the chain, then read its
		// tail as it is now.
		if _, err := tx.ExecContext(ctx, s.d.LockChain); err != nil {
			return nil, err
		}
		tail = chainTail{}
	}
	if !tail.known {
		tail = chainTail{known: true, hash: postern.GenesisHash}
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1`).Scan(&tail.seq, &tail.hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	links := make([]link, len(reqs))
	seq, prev := tail.seq, tail.hash
	// The batch's rows go in with one statement per table (in chunks of
	// recordsPerInsert): on a database across the network, a round trip
	// per record would bound the batch's speed.
	records := make([]any, 0, len(reqs)*recordColumns)
	var resources []any
	for i, r := range reqs {
		rec := r.rec
		seq++
		hash := postern.ChainHash(prev, seq, rec.Body)
		links[i] = link{seq: seq, prev: bytes.Clone(prev), hash: hash}
		prev = hash
		resJSON, err := json.Marshal(nonNil(rec.Resources))
		if err != nil {
			return nil, err
		}
		eventTime, _ := timeArg(rec.EventTime) // checked by AppendAudit
		records = append(records, seq, rec.EventID, eventTime, rec.EventName, rec.EventSource,
			rec.UserName, rec.AccessKeyID, rec.ErrorCode, string(resJSON), emptyIfNil(rec.Body), links[i].prev, hash)
		for _, res := range rec.Resources {
			resources = append(resources, res, seq)
		}
	}
	if err := insertRows(ctx, tx, s.insRecord, insertRecordHead, "", recordColumns, records); err != nil {
		return nil, err
	}
	if err := insertRows(ctx, tx, s.insResource, insertResourceHead, insertResourceTail, 2, resources); err != nil {
		return nil, err
	}
	if s.beforeAuditCommit != nil {
		if err := s.beforeAuditCommit(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	// Keep a private copy: the callers own the slices in their records.
	s.tail = chainTail{known: true, seq: seq, hash: bytes.Clone(prev)}
	return links, nil
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

const auditColumns = `r.seq, r.event_id, r.event_time, r.event_name, r.event_source, r.user_name, r.access_key_id,
	r.error_code, r.resources, r.body, r.prev_hash, r.hash`

func scanAudit(ctx context.Context, rows *sql.Rows, err error, what string) ([]postern.AuditRecord, error) {
	if err != nil {
		return nil, dbErr(ctx, err, what)
	}
	defer rows.Close()
	out := []postern.AuditRecord{}
	for rows.Next() {
		var r postern.AuditRecord
		var resources string
		if err := rows.Scan(&r.Seq, &r.EventID, timeCol{&r.EventTime}, &r.EventName, &r.EventSource, &r.UserName,
			&r.AccessKeyID, &r.ErrorCode, &resources, &r.Body, &r.PrevHash, &r.Hash); err != nil {
			return nil, dbErr(ctx, err, what)
		}
		if err := json.Unmarshal([]byte(resources), &r.Resources); err != nil {
			return nil, dbErr(ctx, fmt.Errorf("audit record %d: resources: %w", r.Seq, err), what)
		}
		if len(r.Resources) == 0 {
			r.Resources = nil
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(ctx, err, what)
	}
	return out, nil
}

// Lookup limits.
const (
	DefaultLookupLimit = 50
	MaxLookupLimit     = 1000
	// DefaultScanLimit is what ScanAudit returns at most when its limit
	// is zero or negative.
	DefaultScanLimit = 1000
)

// LookupAudit returns the records matching q, newest first: at most
// q.Limit (default 50, at most 1000).
func (s *Store) LookupAudit(ctx context.Context, q postern.AuditQuery) ([]postern.AuditRecord, error) {
	var (
		from   = `audit_records r`
		seqCol = `r.seq`
		where  []string
		args   []any
	)
	if q.Resource != "" {
		// Walk the (resource, seq) key backwards; ordering by r.seq
		// instead would make SQLite sort every match.
		from, seqCol = `audit_resources ar JOIN audit_records r ON r.seq = ar.seq`, `ar.seq`
		where, args = append(where, `ar.resource = ?`), append(args, q.Resource)
	}
	if q.EventName != "" {
		where, args = append(where, `r.event_name = ?`), append(args, q.EventName)
	}
	if q.UserName != "" {
		where, args = append(where, `r.user_name = ?`), append(args, q.UserName)
	}
	if !q.Start.IsZero() {
		where, args = append(where, `r.event_time >= ?`), append(args, clampNanos(q.Start))
	}
	if !q.End.IsZero() {
		where, args = append(where, `r.event_time <= ?`), append(args, clampNanos(q.End))
	}
	if q.ErrorsOnly {
		where = append(where, `r.error_code <> ''`)
	}
	if q.BeforeSeq > 0 {
		where, args = append(where, seqCol+` < ?`), append(args, q.BeforeSeq)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLookupLimit
	}
	limit = min(limit, MaxLookupLimit)
	query := `SELECT ` + auditColumns + ` FROM ` + from
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY ` + seqCol + ` DESC LIMIT ?`
	rows, err := s.r.QueryContext(ctx, query, append(args, limit)...)
	return scanAudit(ctx, rows, err, "look up audit records")
}

// clampNanos converts a query bound to nanoseconds, clamping times beyond
// what the column can hold instead of refusing them.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Year() < 1678:
		return math.MinInt64
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// ScanAudit returns up to limit records with Seq >= from, in order; a
// limit of zero or less means DefaultScanLimit.
func (s *Store) ScanAudit(ctx context.Context, from int64, limit int) ([]postern.AuditRecord, error) {
	if limit <= 0 {
		limit = DefaultScanLimit
	}
	var recs []postern.AuditRecord
	err := s.readTx(ctx, "read audit records", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_records r WHERE r.seq >= ? ORDER BY r.seq LIMIT ?`, from, limit)
		if recs, err = scanAudit(ctx, rows, err, "read audit records"); err != nil || len(recs) == 0 {
			return err
		}
		return indexedResources(ctx, tx, recs)
	})
	return recs, err
}

// indexedResources marks recs as read from the store and fills their
// Indexed: which of each record's Resources the resource index holds. It
// asks the index for the page's resources over the page's seq range, a
// range of the (resource, seq) key each.
func indexedResources(ctx context.Context, tx *sql.Tx, recs []postern.AuditRecord) error {
	bySeq := make(map[int64]*postern.AuditRecord, len(recs))
	var names []string
	seen := map[string]bool{}
	for i := range recs {
		r := &recs[i]
		r.Stored = true
		bySeq[r.Seq] = r
		for _, res := range r.Resources {
			if !seen[res] {
				seen[res] = true
				names = append(names, res)
			}
		}
	}
	lo, hi := recs[0].Seq, recs[len(recs)-1].Seq
	for len(names) > 0 {
		chunk := names[:min(len(names), 500)]
		names = names[len(chunk):]
		in, args := idFilter("resource", chunk)
		rows, err := tx.QueryContext(ctx, `SELECT resource, seq FROM audit_resources`+in+` AND seq >= ? AND seq <= ?`, append(args, lo, hi)...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var res string
			var seq int64
			if err := rows.Scan(&res, &seq); err != nil {
				rows.Close()
				return err
			}
			if r := bySeq[seq]; r != nil && slices.Contains(r.Resources, res) {
				r.Indexed = append(r.Indexed, res)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// PutAuditDigest stores a signed digest. Several digests may cover the
// same Seq.
func (s *Store) PutAuditDigest(ctx context.Context, d *postern.AuditDigest) error {
	if d == nil {
		return postern.Invalidf("no audit digest")
	}
	t, err := timeArg(d.Time)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "store an audit digest", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_digests (seq, hash, time, key_id, signature) VALUES (?, ?, ?, ?, ?)`,
			d.Seq, emptyIfNil(d.Hash), t, d.KeyID, emptyIfNil(d.Signature))
		return err
	})
}

// ListAuditDigests returns the digests with Seq >= from, oldest first.
func (s *Store) ListAuditDigests(ctx context.Context, from int64) ([]postern.AuditDigest, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT seq, hash, time, key_id, signature FROM audit_digests WHERE seq >= ? ORDER BY seq, id`, from)
	if err != nil {
		return nil, dbErr(ctx, err, "list audit digests")
	}
	defer rows.Close()
	out := []postern.AuditDigest{}
	for rows.Next() {
		var d postern.AuditDigest
		if err := rows.Scan(&d.Seq, &d.Hash, timeCol{&d.Time}, &d.KeyID, &d.Signature); err != nil {
			return nil, dbErr(ctx, err, "list audit digests")
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(ctx, err, "list audit digests")
	}
	return out, nil
}
