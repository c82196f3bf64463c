// Package sqlite is the embedded postern.Store: one SQLite database file,
// opened with the cgo-free modernc.org/sqlite driver.
//
// The database runs in WAL mode. All writes go through one connection (a
// *sql.DB limited to one open connection), so they never fight over
// SQLite's single write lock inside the process; reads use a separate pool
// of read-only connections that WAL lets run beside the writer. Audit
// records are appended by a dedicated goroutine that commits concurrent
// appends in one transaction (group commit).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/postern-dev/postern"
)

// Options tune a Store. The zero value selects the defaults.
type Options struct {
	// Readers is the size of the read-only connection pool (default 4).
	Readers int
	// BusyTimeout is how long a statement waits for a lock held by
	// another process before failing (default 5s).
	BusyTimeout time.Duration
	// AuditBatch is the most audit records committed in one transaction
	// (default 512).
	AuditBatch int
}

func (o *Options) setDefaults() {
	if o.Readers <= 0 {
		o.Readers = 4
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	if o.AuditBatch <= 0 {
		o.AuditBatch = 512
	}
}

// Store is a postern.Store backed by a SQLite database file.
type Store struct {
	path string
	w    *sql.DB // the one writer connection
	r    *sql.DB // read-only pool

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
	// SQLite spends longer parsing and planning them than running them.
	// SQL text → statement; read-only after Open.
	hot map[string]*sql.Stmt

	// beforeAuditCommit, when set (by tests), runs before each audit batch
	// commits; an error it returns fails the batch.
	beforeAuditCommit func() error

	closeOnce sync.Once
	closeErr  error
}

var _ postern.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path, brings its schema
// up to date, and starts the audit writer. It refuses a database whose
// schema is newer than this binary knows.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts.setDefaults()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// Create the file ourselves so that it, and the -wal and -shm files
	// SQLite derives from it, are private: it holds sealed secrets and
	// the audit trail.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open database file: %w", err)
	}
	f.Close()

	w, err := sql.Open("sqlite", dsn(abs, opts, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}

	// Readers open after migration: mode=ro cannot create the file or
	// switch it to WAL.
	r, err := sql.Open("sqlite", dsn(abs, opts, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open reader: %w", err)
	}

	s := &Store{
		path:     abs,
		w:        w,
		r:        r,
		appends:  make(chan *appendReq, opts.AuditBatch),
		batchMax: opts.AuditBatch,
		done:     make(chan struct{}),
	}
	if s.insRecord, err = w.PrepareContext(ctx, insertRecordSQL); err == nil {
		s.insResource, err = w.PrepareContext(ctx, insertResourceSQL)
	}
	if err == nil {
		err = s.prepareHot(ctx)
	}
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: prepare audit statements: %w", err)
	}
	go s.auditWriter()
	return s, nil
}

// dsn builds a file: URI for path. The driver applies the underscore
// parameters (as PRAGMAs) to every connection it opens, so pooled
// connections all get the same settings.
func dsn(path string, opts Options, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	if readOnly {
		q.Set("mode", "ro")
		q.Set("_query_only", "1")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "NORMAL")
		// Take the write lock at BEGIN, so a transaction never fails
		// half-way when it upgrades from reading to writing.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	// "file:///abs/path?…": an empty authority, as SQLite's URI rules
	// require.
	return u.String()
}

// Path returns the database file's absolute path.
func (s *Store) Path() string { return s.path }

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
		rerr := s.r.Close()
		// Optimize statistics on the way out, as SQLite recommends for
		// long-lived connections; failure is harmless.
		s.w.Exec("PRAGMA optimize")
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

// isUnique reports whether err is a primary-key or unique violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// writeTx runs fn in a transaction on the writer connection and commits
// it. Errors fn returns that are not *postern.Error are reported as
// internal errors about what.
func (s *Store) writeTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbErr(ctx, err, what)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return dbErr(ctx, err, what)
	}
	if err := tx.Commit(); err != nil {
		return dbErr(ctx, err, what)
	}
	return nil
}

// readTx runs fn in a read-only transaction on the reader pool, so that
// several queries see one snapshot.
func (s *Store) readTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
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
