package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migration is one schema step, read from migrations/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in order. Versions must
// run 1, 2, 3, … without gaps, so that "newest version" means "all of them".
func loadMigrations(name string, fsys fs.FS) ([]migration, error) {
	files, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, f := range files {
		base := path.Base(f)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: migration %s is not named NNNN_name.sql", name, base)
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(base, ".sql"), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("%s: migrations must be numbered 1, 2, 3, … without gaps; found %s at position %d", name, m.name, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema version in d's migrations.
func SchemaVersion(d Dialect) int {
	ms, err := loadMigrations(d.Name, d.Migrations)
	if err != nil {
		return 0
	}
	return len(ms)
}

// ErrSchemaTooNew means the database was written by a newer Postern.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// Migrate applies the migrations in fsys that w lacks, in one transaction,
// and records each in schema_migrations; with d.LockMigrations, processes
// that start together wait for each other and migrate once. It refuses a
// database whose schema is newer than fsys knows.
func Migrate(ctx context.Context, d Dialect, w *sql.DB, fsys fs.FS) error {
	ms, err := loadMigrations(d.Name, fsys)
	if err != nil {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: open database: %w", d.Name, err)
	}
	defer tx.Rollback()
	if d.LockMigrations != "" {
		if _, err := tx.ExecContext(ctx, d.LockMigrations); err != nil {
			return fmt.Errorf("%s: wait for other migrations: %w", d.Name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.SchemaTable); err != nil {
		return fmt.Errorf("%s: create schema_migrations: %w", d.Name, err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("%s: read schema version: %w", d.Name, err)
	}
	if current > len(ms) {
		return fmt.Errorf("%s: %w: the database is at schema version %d, this postern knows up to %d; run a newer postern (or restore a backup made before the upgrade)",
			d.Name, ErrSchemaTooNew, current, len(ms))
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("%s: apply migration %s: %w", d.Name, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("%s: record migration %s: %w", d.Name, m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit migrations: %w", d.Name, err)
	}
	return nil
}
