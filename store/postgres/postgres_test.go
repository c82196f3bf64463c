package postgres

import (
	"context"
	"os"
	"testing"
	"testing/fstest"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/store/postgres/pgtest"
	"github.com/postern-dev/postern/store/sqlstore"
	"github.com/postern-dev/postern/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// openTemp opens a store on a fresh schema and closes it when the test
// ends.
func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.URL(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) postern.Store { return openTemp(t, Options{}) })
}

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                              `SELECT 1`,
		`SELECT a FROM t WHERE b = ? AND c = ?`: `SELECT a FROM t WHERE b = $1 AND c = $2`,
		`SELECT '?', "a?" FROM t WHERE b = ?`:   `SELECT '?', "a?" FROM t WHERE b = $1`,
		`SELECT 'it''s ?' WHERE x = ?`:          `SELECT 'it''s ?' WHERE x = $1`,
		"-- what?\nSELECT ?":                    "-- what?\nSELECT $1",
		`SELECT 'unterminated ?`:                `SELECT 'unterminated ?`,
	} {
		if got := Rebind(in); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMigratesFromAnOlderSchema builds a database at an older schema
// version with data in it, as an earlier Postern left it, and opens it: the
// store brings it up to date and keeps the data.
func TestMigratesFromAnOlderSchema(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	db, err := OpenDB(url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	older := fstest.MapFS{}
	for _, name := range []string{"0001_init.sql", "0002_agents.sql", "0003_endpoints.sql"} {
		b, err := migrationFS.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		older["migrations/"+name] = &fstest.MapFile{Data: b}
	}
	if err := sqlstore.Migrate(ctx, Dialect, db, older); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO users (name, id, created_at) VALUES ('veteran', 'AIDAVETERAN', 1)`); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatalf("open a database at schema version 3: %v", err)
	}
	defer s.Close()
	if u, err := s.GetUser(ctx, "veteran"); err != nil || u.ID != "AIDAVETERAN" {
		t.Errorf("the user from before the migration: %+v, %v", u, err)
	}
	var version int
	if err := db.QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&version); err != nil || version != SchemaVersion() {
		t.Errorf("schema version after opening: %d (%v), want %d", version, err, SchemaVersion())
	}
	// What the later migrations added works.
	if err := s.CreateLoginProfile(ctx, &postern.LoginProfile{UserName: "veteran", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdA$aGFzaA"}); err != nil {
		t.Errorf("a table of a later migration: %v", err)
	}
}

// TestReplicasStartingTogetherMigrateOnce opens several stores on one new
// database at once: each migration is applied once, and all of them work.
func TestReplicasStartingTogetherMigrateOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	const replicas = 4
	errs := make(chan error, replicas)
	stores := make(chan *Store, replicas)
	for range replicas {
		go func() {
			s, err := Open(ctx, url, Options{MaxConns: 2})
			if err == nil {
				stores <- s
			}
			errs <- err
		}()
	}
	for range replicas {
		if err := <-errs; err != nil {
			t.Errorf("a replica starting with the others: %v", err)
		}
	}
	close(stores)
	for s := range stores {
		if _, err := s.PutMetaIfAbsent(ctx, "account_id", "123456789012"); err != nil {
			t.Error(err)
		}
		s.Close()
	}
	db, err := OpenDB(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows, versions int
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows != SchemaVersion() || versions != SchemaVersion() {
		t.Errorf("schema_migrations holds %d rows of %d versions, want each of the %d once", rows, versions, SchemaVersion())
	}
}
