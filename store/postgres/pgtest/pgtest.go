// Package pgtest gives tests a fresh, empty PostgreSQL schema of their
// own. It uses the server that POSTERN_TEST_POSTGRES names (default: the
// local one on 127.0.0.1:5432, database test, user postgres); when that
// cannot be reached it starts a throwaway cluster of its own with the
// PostgreSQL binaries (initdb as the postgres user), which Main stops.
//
// Under CI (the CI environment variable set) a test that cannot get a
// database fails; elsewhere it is skipped with the reason.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DefaultURL is the database tests use unless POSTERN_TEST_POSTGRES says
// otherwise.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	once    sync.Once
	baseURL string
	baseErr error
	cluster *ownCluster
)

// Main runs the package's tests and then stops a cluster pgtest started.
// Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if cluster != nil {
		cluster.stop()
	}
	return code
}

// URL returns the URL of a new, empty schema (as the connection's
// search_path) in the test database; the schema is dropped when t ends.
func URL(t testing.TB) string {
	t.Helper()
	u, drop, err := Schema(context.Background(), server(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := drop(ctx); err != nil {
			t.Logf("pgtest: %v", err)
		}
	})
	return u
}

// Schema creates a new, empty schema in the database that base names and
// returns the URL of a connection to it (the schema as the search_path),
// and drop, which removes the schema with everything in it. It is URL for
// programs that are not tests, such as the benchmarks: it neither skips
// nor starts a cluster of its own.
func Schema(ctx context.Context, base string) (url string, drop func(context.Context) error, err error) {
	schema := "pt_" + randomHex(6)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop = func(ctx context.Context) error {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return err
		}
		defer admin.Close()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %s: %w", schema, err)
		}
		return nil
	}
	return WithParam(base, "search_path", schema), drop, nil
}

// WithParam returns u with the query parameter name set to value.
func WithParam(u, name, value string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	q.Set(name, value)
	p.RawQuery = q.Encode()
	return p.String()
}

// server returns the URL of a reachable server, or ends the test.
func server(t testing.TB) string {
	once.Do(func() {
		baseURL = os.Getenv("POSTERN_TEST_POSTGRES")
		if baseURL == "" {
			baseURL = DefaultURL
		}
		if baseErr = ping(baseURL); baseErr == nil {
			return
		}
		var c *ownCluster
		if c, baseErr = startCluster(); baseErr == nil {
			cluster, baseURL = c, c.url
		}
	})
	if baseErr != nil {
		msg := fmt.Sprintf("pgtest: no PostgreSQL: %v", baseErr)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return baseURL
}

func ping(u string) error {
	db, err := sql.Open("pgx", u)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// ownCluster is a throwaway PostgreSQL cluster in a temporary directory.
type ownCluster struct {
	dir, url string
	stopArgs []string
}

// binDir finds the PostgreSQL server binaries.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("no initdb found (install postgresql)")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

func startCluster() (*ownCluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	// PostgreSQL refuses to run as root: run it as the postgres user.
	var asUser []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		asUser = []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--clear-groups", "--"}
	}
	run := func(name string, args ...string) error {
		argv := append(append(asUser[:len(asUser):len(asUser)], filepath.Join(bin, name)), args...)
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300", port, dir)
	if err := run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "start"); err != nil {
		return nil, err
	}
	c := &ownCluster{dir: dir, url: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	c.stopArgs = append(asUser[:len(asUser):len(asUser)], filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
	return c, ping(c.url)
}

func (c *ownCluster) stop() {
	exec.Command(c.stopArgs[0], c.stopArgs[1:]...).Run()
	os.RemoveAll(c.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(b)
}
