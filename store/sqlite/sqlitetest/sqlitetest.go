// Package sqlitetest gives tests a fresh SQLite store and a sealer, the
// two things an authority is built on.
package sqlitetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/postern-dev/postern/seal"
	"github.com/postern-dev/postern/store/sqlite"
)

// Open returns a store in a temporary directory, closed when t ends, and
// a sealer with a fixed all-zero key (tests only).
func Open(t testing.TB) (*sqlite.Store, *seal.Sealer) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "postern.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sealer, err := seal.New(make([]byte, seal.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return st, sealer
}
