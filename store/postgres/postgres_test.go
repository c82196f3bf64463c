package postgres

import (
	"context"
	"os"
	"testing"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/store/postgres/pgtest"
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
