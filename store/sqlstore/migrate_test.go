package sqlstore

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrationsChecksNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"gap": {
			"migrations/0001_a.sql": {Data: []byte("SELECT 1")},
			"migrations/0003_c.sql": {Data: []byte("SELECT 1")},
		},
		"no number": {"migrations/init.sql": {Data: []byte("SELECT 1")}},
		"zero":      {"migrations/0000_a.sql": {Data: []byte("SELECT 1")}},
		"duplicate": {
			"migrations/0001_a.sql": {Data: []byte("SELECT 1")},
			"migrations/0001_b.sql": {Data: []byte("SELECT 1")},
		},
	} {
		if _, err := loadMigrations("test", fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ms, err := loadMigrations("test", fstest.MapFS{"migrations/0001_a.sql": {Data: []byte("SELECT 1")}})
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %d, %v", len(ms), err)
	}
}
