// Package sqlstore is the postern.Store on a SQL database, shared by the
// two stores Postern ships: store/sqlite (embedded, the default) and
// store/postgres (several replicas on one PostgreSQL). The queries are
// written once, with ? placeholders, in the SQL both databases speak; a
// Dialect supplies what differs (errors, isolation, migrations, how the
// audit chain's tail is locked).
//
// Audit records are appended by a dedicated goroutine per process that
// commits concurrent appends in one transaction (group commit).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/ttlcache"
)

// Dialect is what a database brings to the shared store.
type Dialect struct {
	// Name is the database's name in error messages ("sqlite").
	Name string
	// Migrations holds migrations/NNNN_name.sql, applied in order.
	Migrations fs.FS
	// SchemaTable creates schema_migrations if it does not exist.
	SchemaTable string
	// LockMigrations, when set, runs first in the migration transaction
	// so that processes starting together migrate once.
	LockMigrations string
	// IsUnique reports whether err is a primary-key or unique violation.
	IsUnique func(err error) bool
	// Retryable reports whether a write transaction that failed with err
	// may be run again from the start (a serialization failure).
	Retryable func(err error) bool
	// WriteIsolation is the isolation level of write transactions, and
	// ReadIsolation that of read transactions (several queries that must
	// see one snapshot).
	WriteIsolation sql.IsolationLevel
	ReadIsolation  sql.IsolationLevel
	// SharedChain is set when several processes append to the audit
	// chain: each batch then takes LockChain and reads the chain's tail
	// afresh instead of trusting the one it last committed.
	SharedChain bool
	LockChain   string
	// OnClose, when set, runs on the writer before it closes.
	OnClose func(w *sql.DB)
}

// Options tune a Store. The zero value selects the defaults.
type Options struct {
	// AuditBatch is the most audit records committed in one transaction
	// (default 512).
	AuditBatch int
	// BeforeAuditCommit, when set (by tests), runs before each audit
	// batch commits; an error it returns fails the batch.
	BeforeAuditCommit func() error
}

// Store is a postern.Store backed by a SQL database.
type Store struct {
	d Dialect
	w *sql.DB // writes (SQLite: the one writer connection)
	r *sql.DB // reads (SQLite: a read-only pool; may be w)

	// Audit appends: callers hold mu for reading while they enqueue, Close
	// holds it for writing while it closes the queue, so no append is ever
	// sent on a closed channel.
	mu       sync.RWMutex
	closed   bool
	appends  chan *appendReq
	batchMax int
	done     chan struct{} // closed when the audit writer has returned
	tail     chainTail     // owned by the audit writer goroutine

	insRecord, insResource *sql.Stmt // prepared on w for the audit writer

	// hot holds the reads every API call makes (its user, policies and
	// resource; see hotQueries), prepared on the reader pool at Open:
	// parsing and planning them costs more than running them.
	// SQL text → statement; read-only after Open.
	hot map[string]*sql.Stmt

	beforeAuditCommit func() error

	// instances caches GetInstance briefly (see instanceCacheTTL); every
	// write transaction of this Store forgets what it may have changed.
	instances *ttlcache.Cache[string, postern.Instance]

	closeOnce sync.Once
	closeErr  error
}

var _ postern.Store = (*Store)(nil)

// Open prepares the store's statements on w and r, whose schema Migrate
// has brought up to date, and starts the audit writer. The Store owns w
// and r from then on (also when Open fails): Close closes them.
func Open(ctx context.Context, d Dialect, w, r *sql.DB, opts Options) (*Store, error) {
	if opts.AuditBatch <= 0 {
		opts.AuditBatch = 512
	}
	closeDBs := func() {
		if r != w {
			r.Close()
		}
		w.Close()
	}
	s := &Store{
		d:                 d,
		w:                 w,
		r:                 r,
		appends:           make(chan *appendReq, opts.AuditBatch),
		batchMax:          opts.AuditBatch,
		done:              make(chan struct{}),
		beforeAuditCommit: opts.BeforeAuditCommit,
		instances:         ttlcache.New[string, postern.Instance](instanceCacheTTL, maxCachedInstances),
	}
	var err error
	if s.insRecord, err = w.PrepareContext(ctx, insertRecordSQL); err == nil {
		s.insResource, err = w.PrepareContext(ctx, insertResourceSQL)
	}
	if err == nil {
		err = s.prepareHot(ctx)
	}
	if err != nil {
		closeDBs()
		return nil, fmt.Errorf("%s: prepare statements: %w", d.Name, err)
	}
	go s.auditWriter()
	return s, nil
}

// Ping reports whether both the writer and the reader pool can serve.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return postern.Internal(err, "database writer is unavailable")
	}
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return postern.Internal(err, "database reader is unavailable")
	}
	return nil
}

// Close stops the audit writer after it has committed (or failed) every
// append already queued, then closes the database. Appends that arrive
// later fail. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.appends)
		s.mu.Unlock()
		<-s.done

		s.insRecord.Close()
		s.insResource.Close()
		for _, st := range s.hot {
			st.Close()
		}
		var rerr error
		if s.r != s.w {
			rerr = s.r.Close()
		}
		if s.d.OnClose != nil {
			s.d.OnClose(s.w)
		}
		werr := s.w.Close()
		s.closeErr = errors.Join(rerr, werr)
	})
	return s.closeErr
}

// dbErr turns a driver error into an internal *postern.Error whose message
// says what failed, never the SQL. A cancelled context stays visible to
// errors.Is.
func dbErr(ctx context.Context, err error, what string) error {
	if err == nil {
		return nil
	}
	var pe *postern.Error
	if errors.As(err, &pe) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	return postern.Internal(err, "database: cannot %s", what)
}

// writeTx runs fn in a write transaction and commits it, running it
// again from the start while the database reports a serialization failure
// (a concurrent transaction of another process got in first). Errors fn
// returns that are not *postern.Error are reported as internal errors
// about what.
func (s *Store) writeTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	return s.writeTxForgetting(ctx, what, s.instances.Clear, fn)
}

// writeInstanceTx is writeTx for a transaction that changes one instance's
// row and nothing else: it forgets only that instance's cached read, so
// that agents' heartbeats leave the others' cached.
func (s *Store) writeInstanceTx(ctx context.Context, what, id string, fn func(tx *sql.Tx) error) error {
	return s.writeTxForgetting(ctx, what, func() { s.instances.Forget(id) }, fn)
}

// writeTxForgetting is writeTx, calling forget after each attempt ends to
// drop the cached instance reads it may have made stale.
func (s *Store) writeTxForgetting(ctx context.Context, what string, forget func(), fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.writeTxOnce(ctx, forget, fn)
		if err != nil && attempt < maxWriteAttempts && s.d.Retryable != nil && s.d.Retryable(err) && ctx.Err() == nil {
			continue
		}
		return dbErr(ctx, err, what)
	}
}

// maxWriteAttempts bounds writeTx's retries: conflicts that persist this
// long are reported rather than retried forever.
const maxWriteAttempts = 20

func (s *Store) writeTxOnce(ctx context.Context, forget func(), fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, &sql.TxOptions{Isolation: s.d.WriteIsolation})
	if err != nil {
		return err
	}
	// Cached instance reads may be stale once the transaction is over
	// (committed or not: forgetting too much costs only a read).
	defer forget()
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// readTx runs fn in a read-only transaction on the reader pool, so that
// several queries see one snapshot.
func (s *Store) readTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: s.d.ReadIsolation})
	if err != nil {
		return dbErr(ctx, err, what)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return dbErr(ctx, err, what)
	}
	return nil
}

// hotQueries are the reads on every API call's path, prepared at Open.
var hotQueries = []string{getUserSQL, userExistsSQL, userPoliciesSQL, getInstanceSQL}

// prepareHot prepares hotQueries on the reader pool. It runs in Open,
// before any transaction holds a reader: preparing later, from inside a
// read transaction, could wait for a connection that transactions waiting
// the same way hold.
func (s *Store) prepareHot(ctx context.Context) error {
	s.hot = make(map[string]*sql.Stmt, len(hotQueries))
	for _, q := range hotQueries {
		st, err := s.r.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		s.hot[q] = st
	}
	return nil
}

// hotReader is a queryer that runs the hotQueries as prepared statements,
// on the reader pool or, when tx is set, in that read transaction; any
// other query runs as usual.
type hotReader struct {
	s  *Store
	tx *sql.Tx
}

// stmt returns the prepared statement for query, or nil.
func (h hotReader) stmt(ctx context.Context, query string) *sql.Stmt {
	st := h.s.hot[query]
	if st == nil || h.tx == nil {
		return st
	}
	// On the transaction's own connection, where the statement is
	// prepared once and then reused.
	return h.tx.StmtContext(ctx, st)
}

func (h hotReader) plain() queryer {
	if h.tx != nil {
		return h.tx
	}
	return h.s.r
}

func (h hotReader) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := h.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return h.plain().QueryContext(ctx, query, args...)
}

func (h hotReader) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := h.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return h.plain().QueryRowContext(ctx, query, args...)
}

func (h hotReader) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return h.plain().ExecContext(ctx, query, args...)
}

// queryer is what *sql.DB and *sql.Tx have in common.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// exists reports whether query (a SELECT of one row) finds a row.
func exists(ctx context.Context, q queryer, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Times are stored as nanoseconds since the Unix epoch, UTC; NULL is the
// zero time. Times outside what int64 nanoseconds can hold (before 1678 or
// after 2262) are not representable and are refused.

func timeArg(t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	if t.Year() < 1678 || t.Year() > 2261 {
		return nil, postern.Invalidf("time %s is out of the storable range", t.Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

func scanTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// emptyIfNil keeps NOT NULL blob columns happy: database/sql sends a nil
// slice as NULL.
func emptyIfNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// DBs returns the store's database handles (writer, reader pool; the
// same handle where the database has one pool), for tests and
// maintenance tools.
func (s *Store) DBs() (w, r *sql.DB) { return s.w, s.r }

// QueuedAppends is how many audit appends wait for the audit writer.
func (s *Store) QueuedAppends() int { return len(s.appends) }
