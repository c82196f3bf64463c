// Package sqlite is the embedded postern.Store: one SQLite database file,
// opened with the cgo-free modernc.org/sqlite driver, with the queries of
// store/sqlstore.
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
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/postern-dev/postern/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Dialect is SQLite's part of the shared store: one process owns the
// database, so the audit writer keeps the chain's tail in memory.
var Dialect = sqlstore.Dialect{
	Name:       "sqlite",
	Migrations: migrationFS,
	SchemaTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`,
	IsUnique: isUnique,
	OnClose: func(w *sql.DB) {
		// Optimize statistics on the way out, as SQLite recommends for
		// long-lived connections; failure is harmless.
		w.Exec("PRAGMA optimize")
	},
}

// Store is the shared SQL store.
type Store = sqlstore.Store

// Options tune a Store. The zero value selects the defaults.
type Options struct {
	// Readers is the size of the read-only connection pool (default 4).
	Readers int
	// BusyTimeout is how long a statement waits for a lock held by
	// another process before failing (default 5s).
	BusyTimeout time.Duration
	// Store tunes the shared store (audit batch size).
	Store sqlstore.Options
}

func (o *Options) setDefaults() {
	if o.Readers <= 0 {
		o.Readers = 4
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
}

// ErrSchemaTooNew means the database was written by a newer Postern.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int { return sqlstore.SchemaVersion(Dialect) }

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
	// Migrate before the readers open: mode=ro cannot create the file or
	// switch it to WAL.
	if err := sqlstore.Migrate(ctx, Dialect, w, migrationFS); err != nil {
		w.Close()
		return nil, err
	}
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
	return sqlstore.Open(ctx, Dialect, w, r, opts.Store)
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

// isUnique reports whether err is a primary-key or unique violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}
