package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/postern-dev/postern/bench/internal/benchrig"
	"github.com/postern-dev/postern/store/postgres/pgtest"
)

// defaultPostgres is the database the PostgreSQL runs use unless
// POSTERN_BENCH_POSTGRES names another: the local server the tests use.
const defaultPostgres = pgtest.DefaultURL

// postgresEnv names the database of the PostgreSQL runs.
const postgresEnv = "POSTERN_BENCH_POSTGRES"

// pgConfig is one PostgreSQL configuration: how many replicas share the
// database.
type pgConfig struct{ Replicas int }

// pgConfigs are the configurations measured, in order.
var pgConfigs = []pgConfig{{Replicas: 1}, {Replicas: 2}}

// pgRun is the sustained-push run of one PostgreSQL configuration.
type pgRun struct {
	Config    pgConfig
	Sustained *sustainedResult
	Err       error // it could not be measured
}

// pgResult is what the PostgreSQL runs measured, or why they could not.
type pgResult struct {
	Where   string // the database, without a password: host:port/database
	Server  string // PostgreSQL's version and its durability settings
	Local   bool   // its processes are visible on this machine (CPU column)
	Skipped string // why nothing was measured: PostgreSQL could not be reached
	Runs    []pgRun
}

// postgresURL is the database of the PostgreSQL runs.
func postgresURL() string {
	if u := os.Getenv(postgresEnv); u != "" {
		return u
	}
	return defaultPostgres
}

// redactURL is u without its password or query: where the database is.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(the URL in " + postgresEnv + ")"
	}
	return p.Host + p.Path
}

// measurePostgres repeats the sustained-push run on PostgreSQL, once per
// configuration, each on a fresh rig and a fresh schema that is dropped
// afterwards. A database that cannot be reached is noted in the result,
// not an error: the rest of the report stands without it. So is a
// configuration that fails, after saying so on stderr.
func measurePostgres(ctx context.Context, o options) *pgResult {
	base := postgresURL()
	res := &pgResult{Where: redactURL(base)}
	info, err := postgresInfo(ctx, base)
	if err != nil {
		res.Skipped = err.Error()
		progress("PostgreSQL at %s cannot be reached, skipping its runs: %v", res.Where, err)
		return res
	}
	res.Server = info
	res.Local = benchrig.CommandCPU("postgres") > 0
	for _, c := range pgConfigs {
		progress("sustained pushes on PostgreSQL, %d replica(s): %d clients, %d access keys, up to %d pushes or %s",
			c.Replicas, o.workers, o.users, o.sustainedMax, o.sustainedFor)
		s, err := sustainedOnPostgres(ctx, o, base, c)
		if err != nil {
			progress("PostgreSQL, %d replica(s): %v", c.Replicas, err)
		}
		res.Runs = append(res.Runs, pgRun{Config: c, Sustained: s, Err: err})
	}
	return res
}

// sustainedOnPostgres starts a rig whose servers share a new schema,
// measures sustained pushes, stops the rig and drops the schema.
func sustainedOnPostgres(ctx context.Context, o options, base string, c pgConfig) (*sustainedResult, error) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	schema, drop, err := pgtest.Schema(sctx, base)
	cancel()
	if err != nil {
		return nil, err
	}
	defer func() {
		// The rig has stopped (deferred after this): nothing holds the
		// schema's tables any more.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := drop(dctx); err != nil {
			progress("PostgreSQL: %v", err)
		}
	}()
	r, err := startRig(ctx, rigConfig{Postern: o.postern, BenchUsers: o.users, Store: schema, Replicas: c.Replicas})
	if err != nil {
		return nil, err
	}
	defer r.stop()
	return measureSustained(ctx, r, o.workers, o.sustainedMax, o.sustainedFor)
}

// postgresInfo checks that the database answers and describes its
// server: version, and the settings that decide what a commit costs.
func postgresInfo(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", err
	}
	defer db.Close()
	settings := []string{"server_version", "fsync", "synchronous_commit", "max_connections"}
	vals := make([]string, len(settings))
	for i, name := range settings {
		if err := db.QueryRowContext(ctx, "SELECT current_setting($1)", name).Scan(&vals[i]); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("PostgreSQL %s; `fsync` %s, `synchronous_commit` %s, `max_connections` %s", vals[0], vals[1], vals[2], vals[3]), nil
}

// pgCounters are PostgreSQL's cumulative statistics for the database: the
// transactions committed and rolled back, and the WAL's writes and flushes
// (fsync) for the whole server. Backends report them within about a
// second, so a difference over a run of seconds is close, not exact.
type pgCounters struct {
	Commits, Rollbacks int64
	WALWrites, WALSync int64
}

// readPGCounters reads the counters; ok is false when the server does not
// have them (pg_stat_wal is PostgreSQL 14 and later) or does not answer.
func readPGCounters(ctx context.Context, dbURL string) (c pgCounters, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return c, false
	}
	defer db.Close()
	if err := db.QueryRowContext(ctx, `SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()`).
		Scan(&c.Commits, &c.Rollbacks); err != nil {
		return c, false
	}
	if err := db.QueryRowContext(ctx, `SELECT wal_write, wal_sync FROM pg_stat_wal`).Scan(&c.WALWrites, &c.WALSync); err != nil {
		return c, false
	}
	return c, true
}

func (c pgCounters) sub(d pgCounters) pgCounters {
	return pgCounters{c.Commits - d.Commits, c.Rollbacks - d.Rollbacks, c.WALWrites - d.WALWrites, c.WALSync - d.WALSync}
}
