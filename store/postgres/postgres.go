// Package postgres is the postern.Store on PostgreSQL, for several server
// replicas sharing one database. It runs the queries of store/sqlstore
// through pgx's database/sql driver.
//
// Write transactions are SERIALIZABLE and run again when PostgreSQL
// reports that a concurrent transaction got in first, so the store's
// check-then-write steps hold across replicas exactly as they do in one
// SQLite process. Each replica group-commits its audit appends; a batch
// takes a transaction-scoped advisory lock and reads the chain's tail
// afresh, so all replicas extend one chain. Migrations run under another
// advisory lock: replicas that start together migrate once.
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/postern-dev/postern/store/sqlstore"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Advisory lock keys (pg_advisory_xact_lock takes one bigint). Arbitrary
// but fixed: every replica must use the same ones.
const (
	migrationLockKey = 0x706f7374_65726e01 // "postern" 01
	chainLockKey     = 0x706f7374_65726e02 // "postern" 02
)

// Dialect is PostgreSQL's part of the shared store.
var Dialect = sqlstore.Dialect{
	Name:       "postgres",
	Migrations: migrationFS,
	SchemaTable: `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`,
	LockMigrations: "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(migrationLockKey, 10) + ")",
	IsUnique:       func(err error) bool { return sqlState(err) == "23505" },
	Retryable: func(err error) bool {
		switch sqlState(err) {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
		return false
	},
	WriteIsolation: sql.LevelSerializable,
	ReadIsolation:  sql.LevelRepeatableRead,
	SharedChain:    true,
	LockChain:      "SELECT pg_advisory_xact_lock(" + strconv.FormatInt(chainLockKey, 10) + ")",
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Store is the shared SQL store.
type Store = sqlstore.Store

// Options tune a Store. The zero value selects the defaults.
type Options struct {
	// MaxConns is the most connections the replica opens (default 16).
	MaxConns int
	// Store tunes the shared store (audit batch size).
	Store sqlstore.Options
}

// ErrSchemaTooNew means the database was written by a newer Postern.
var ErrSchemaTooNew = sqlstore.ErrSchemaTooNew

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int { return sqlstore.SchemaVersion(Dialect) }

// ErrUnreachable means the database did not answer: it may be down or
// starting; trying again later may work.
var ErrUnreachable = errors.New("cannot reach the database")

// Open connects to the database that url names (a postgres:// URL or a
// key=value string, as libpq takes), brings its schema up to date and
// starts the audit writer. It fails, without retrying, when the database
// cannot be reached (ErrUnreachable); errors never include the URL's
// password.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	db, err := OpenDB(url, opts.MaxConns)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if sqlState(err) != "" {
			// The server answered, and refused (a bad login, no such
			// database): waiting will not help.
			return nil, fmt.Errorf("postgres: %w", err)
		}
		return nil, fmt.Errorf("postgres: %w: %w", ErrUnreachable, err)
	}
	if err := sqlstore.Migrate(ctx, Dialect, db, migrationFS); err != nil {
		db.Close()
		return nil, err
	}
	return sqlstore.Open(ctx, Dialect, db, db, opts.Store)
}

// OpenDB returns a pool of at most maxConns (default 16) connections to
// url, on which the store's ? placeholders work. It does not connect yet.
func OpenDB(url string, maxConns int) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's parse errors do not repeat the password.
		return nil, fmt.Errorf("postgres: bad database URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if maxConns <= 0 {
		maxConns = 16
	}
	db := sql.OpenDB(connector{stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// connector hands out connections that rewrite ? placeholders.
type connector struct{ driver.Connector }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &rebindConn{conn.(*stdlib.Conn)}, nil
}

// rebindConn is a pgx connection whose queries may use ? for parameters: the
// store's SQL is shared with SQLite. Every other driver interface of
// *stdlib.Conn (transactions, value checking, session reset) is promoted.
type rebindConn struct{ *stdlib.Conn }

func (c *rebindConn) Prepare(query string) (driver.Stmt, error) {
	return c.Conn.Prepare(Rebind(query))
}

func (c *rebindConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.Conn.PrepareContext(ctx, Rebind(query))
}

func (c *rebindConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, Rebind(query), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, Rebind(query), args)
}

// Rebind turns the ? placeholders of query into PostgreSQL's $1, $2, …,
// leaving string literals, quoted identifiers and comments alone. A query
// without ? is returned as it is.
func Rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(query) && query[j] != c {
				j++
			}
			b.WriteString(query[i:min(j+1, len(query))])
			i = j
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j - 1
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
