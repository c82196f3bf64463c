package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/store/sqlstore"
	"github.com/postern-dev/postern/store/storetest"
)

func writer(s *Store) *sql.DB     { w, _ := s.DBs(); return w }
func readerPool(s *Store) *sql.DB { _, r := s.DBs(); return r }

// openTemp opens a store on a fresh database in a temporary directory and
// closes it when the test ends.
func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "postern.db"), opts)
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

// TestConformanceSmallBatches runs the suite with batches of one and two
// records, so that batch boundaries fall everywhere.
func TestConformanceSmallBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite already ran with default options")
	}
	storetest.Run(t, func(t *testing.T) postern.Store {
		return openTemp(t, Options{Store: sqlstore.Options{AuditBatch: 2}, Readers: 1})
	})
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "postern.db")
	for i := range 3 {
		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		name := fmt.Sprintf("user%d", i)
		if err := s.CreateUser(ctx, &postern.User{Name: name, ID: "AIDA" + name}); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendAudit(ctx, &postern.AuditRecord{Body: []byte(name)}); err != nil {
			t.Fatal(err)
		}
		users, err := s.ListUsers(ctx)
		if err != nil || len(users) != i+1 {
			t.Fatalf("open #%d: %d users (%v), want %d", i+1, len(users), err, i+1)
		}
		var applied, max int
		if err := readerPool(s).QueryRow(`SELECT count(*), max(version) FROM schema_migrations`).Scan(&applied, &max); err != nil {
			t.Fatal(err)
		}
		if applied != SchemaVersion() || max != SchemaVersion() {
			t.Errorf("open #%d: %d migrations recorded up to %d, want %d", i+1, applied, max, SchemaVersion())
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The chain continued across reopenings: the tail was read back.
	s := openAt(t, path)
	recs, err := s.ScanAudit(ctx, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, recs, 3)
}

func openAt(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func verifyChain(t *testing.T, recs []postern.AuditRecord, n int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	prev := postern.GenesisHash
	for i, r := range recs {
		if r.Seq != int64(i+1) || !bytes.Equal(r.PrevHash, prev) || !bytes.Equal(r.Hash, postern.ChainHash(prev, r.Seq, r.Body)) {
			t.Fatalf("record %d (Seq %d) does not continue the chain", i+1, r.Seq)
		}
		prev = r.Hash
	}
}

func TestSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "postern.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	future := SchemaVersion() + 1
	if _, err := writer(s).Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future', 0)`, future); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(ctx, path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: err = %v, want ErrSchemaTooNew", err)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(future)) || !strings.Contains(msg, fmt.Sprint(SchemaVersion())) {
		t.Errorf("error %q does not give both versions", msg)
	}
}

func TestMigrationsApplyAtomically(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	// The real migrations are already applied; the test adds two more.
	v := SchemaVersion()
	fsys := fstest.MapFS{}
	for i := 1; i <= v; i++ {
		fsys[fmt.Sprintf("migrations/%04d_real.sql", i)] = &fstest.MapFile{Data: []byte("SELECT 1")}
	}
	moreName, brokenName := fmt.Sprintf("migrations/%04d_more.sql", v+1), fmt.Sprintf("migrations/%04d_broken.sql", v+2)
	fsys[moreName] = &fstest.MapFile{Data: []byte("CREATE TABLE extra (a INTEGER); CREATE TABLE extra2 (b INTEGER);")}
	fsys[brokenName] = &fstest.MapFile{Data: []byte("CREATE TABLE extra3 (c INTEGER); THIS IS NOT SQL;")}
	// v+1 applies, v+2 fails, and neither stays.
	err := sqlstore.Migrate(ctx, Dialect, writer(s), fsys)
	if err == nil || !strings.Contains(err.Error(), "_broken") {
		t.Fatalf("broken migration: err = %v, want one naming it", err)
	}
	var n int
	if err := writer(s).QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('extra', 'extra2', 'extra3')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d tables of a failed migration run remain", n)
	}
	if err := writer(s).QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&n); err != nil || n != v {
		t.Errorf("schema version after a failed run = %d (%v), want %d", n, err, v)
	}
	// Without the broken step both statements of 0002 apply.
	delete(fsys, brokenName)
	if err := sqlstore.Migrate(ctx, Dialect, writer(s), fsys); err != nil {
		t.Fatal(err)
	}
	if err := writer(s).QueryRow(`SELECT count(*) FROM sqlite_master WHERE name IN ('extra', 'extra2')`).Scan(&n); err != nil || n != 2 {
		t.Errorf("after migration %s: %d of its 2 tables (%v)", moreName, n, err)
	}
}

func TestPragmasOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{Readers: 3, BusyTimeout: 1234 * time.Millisecond})

	var mode string
	var sync, fk, busy int
	if err := writer(s).QueryRow(`SELECT * FROM pragma_journal_mode, pragma_synchronous, pragma_foreign_keys, pragma_busy_timeout`).Scan(&mode, &sync, &fk, &busy); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || sync != 1 || fk != 1 || busy != 1234 {
		t.Errorf("writer: journal_mode %s, synchronous %d, foreign_keys %d, busy_timeout %d; want wal, 1 (NORMAL), 1, 1234", mode, sync, fk, busy)
	}

	// Hold every reader connection at once, so each is a separate one.
	for i := range 3 {
		c, err := readerPool(s).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var qo int
		if err := c.QueryRowContext(ctx, `SELECT * FROM pragma_query_only, pragma_foreign_keys, pragma_busy_timeout`).Scan(&qo, &fk, &busy); err != nil {
			t.Fatal(err)
		}
		if qo != 1 || fk != 1 || busy != 1234 {
			t.Errorf("reader %d: query_only %d, foreign_keys %d, busy_timeout %d", i, qo, fk, busy)
		}
		if _, err := c.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('k', 'v')`); err == nil {
			t.Errorf("reader %d accepted a write", i)
		}
	}
}

func TestReaderPoolSeesWrites(t *testing.T) {
	ctx := context.Background()
	const readers = 4
	s := openTemp(t, Options{Readers: readers})
	// Pin every reader connection, with a read done on each before the
	// writes, so that none could be opened after them.
	var held []*sql.Conn
	for range readers {
		c, err := readerPool(s).Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		var n int
		if err := c.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("count = %d, %v", n, err)
		}
		held = append(held, c)
	}
	for i := range 3 {
		name := fmt.Sprintf("u%d", i)
		if err := s.CreateUser(ctx, &postern.User{Name: name, ID: "AIDA" + name}); err != nil {
			t.Fatal(err)
		}
		for j, c := range held {
			var n int
			if err := c.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != i+1 {
				t.Errorf("reader %d sees %d users right after the commit of user %d", j, n, i+1)
			}
		}
	}
}

func TestFilesArePrivateAndPathsMayBeOdd(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "a dir with spaces, %25 and #")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "postern?.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateUser(ctx, &postern.User{Name: "alice", ID: "AIDA1"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o; the database must be private", filepath.Base(f), fi.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in the directory: %q, want the database, -wal and -shm only", names)
	}
}

func TestOpenRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "postern.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), path, Options{}); err == nil {
		s.Close()
		t.Fatal("opened a file that is not a database")
	}
}

func TestErrorsCarryNoSQL(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t, Options{})
	s.Close()
	_, err := s.GetUser(ctx, "alice")
	if !postern.IsKind(err, postern.KindInternal) {
		t.Fatalf("GetUser on a closed store: %v, want an internal error", err)
	}
	var pe *postern.Error
	errors.As(err, &pe)
	if strings.Contains(pe.Message, "SELECT") || strings.Contains(pe.Message, "users") {
		t.Errorf("message %q shows SQL", pe.Message)
	}
}

func TestTimesOutOfRangeAreRefused(t *testing.T) {
	s := openTemp(t, Options{})
	err := s.CreateUser(context.Background(), &postern.User{Name: "old", ID: "AIDAOLD", CreatedAt: time.Date(1500, 1, 1, 0, 0, 0, 0, time.UTC)})
	if !postern.IsKind(err, postern.KindInvalid) {
		t.Errorf("a time in 1500: err = %v, want KindInvalid", err)
	}
	err = s.AppendAudit(context.Background(), &postern.AuditRecord{EventTime: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
	if !postern.IsKind(err, postern.KindInvalid) {
		t.Errorf("an audit time in 3000: err = %v, want KindInvalid", err)
	}
	// Lookups clamp instead.
	if _, err := s.LookupAudit(context.Background(), postern.AuditQuery{Start: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), End: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Errorf("lookup with extreme bounds: %v", err)
	}
}

// TestFailedCommitFailsTheWholeBatch makes one batch of ten records fail
// at commit and checks that all ten callers hear it, nothing of them is
// stored, and the chain goes on from the last committed record.
func TestFailedCommitFailsTheWholeBatch(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	inFirst := make(chan struct{})
	commits := 0
	hook := func() error { // runs on the writer goroutine only
		commits++
		switch commits {
		case 1:
			close(inFirst)
			<-release
			return nil
		case 2:
			return errors.New("disk on fire")
		}
		return nil
	}
	s := openTemp(t, Options{Store: sqlstore.Options{BeforeAuditCommit: hook}})

	first := make(chan error, 1)
	go func() { first <- s.AppendAudit(ctx, &postern.AuditRecord{EventID: "first", Body: []byte("first")}) }()
	<-inFirst // the writer holds the first batch open

	const n = 10
	recs := make([]*postern.AuditRecord, n)
	errs := make(chan error, n)
	for i := range recs {
		recs[i] = &postern.AuditRecord{EventID: fmt.Sprint(i), Body: []byte(fmt.Sprint(i))}
		go func() { errs <- s.AppendAudit(ctx, recs[i]) }()
	}
	// Wait for all ten to be queued behind the first batch. Nothing here
	// waits for time to pass: the loop ends as soon as the queue holds
	// them.
	for s.QueuedAppends() < n {
		runtime.Gosched()
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first batch: %v", err)
	}
	for range n {
		if err := <-errs; !postern.IsKind(err, postern.KindInternal) {
			t.Errorf("append in the failed batch: err = %v, want an internal error", err)
		}
	}
	for _, r := range recs {
		if r.Seq != 0 || r.Hash != nil {
			t.Errorf("record %s of the failed batch was given Seq %d", r.EventID, r.Seq)
		}
	}

	next := &postern.AuditRecord{EventID: "next", Body: []byte("next")}
	if err := s.AppendAudit(ctx, next); err != nil {
		t.Fatal(err)
	}
	if next.Seq != 2 {
		t.Errorf("the append after the failed batch got Seq %d, want 2", next.Seq)
	}
	got, err := s.ScanAudit(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, got, 2)
	if string(got[0].Body) != "first" || string(got[1].Body) != "next" {
		t.Errorf("stored %q, %q; want first, next", got[0].Body, got[1].Body)
	}
}

// TestClosePendingAppends closes the store while appends are in flight:
// each append either succeeds and is in the database afterwards, or fails
// as unavailable; none hangs, and the writer goroutine is gone.
func TestClosePendingAppends(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "postern.db")
	s, err := Open(ctx, path, Options{Store: sqlstore.Options{AuditBatch: 8}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	type result struct {
		rec *postern.AuditRecord
		err error
	}
	results := make(chan result, n)
	// Close once half the appenders are about to append, so that some
	// are queued or committing while Close runs and some come after it.
	var half sync.WaitGroup
	half.Add(n / 2)
	for i := range n {
		go func() {
			if i < n/2 {
				half.Done()
			}
			r := &postern.AuditRecord{EventID: fmt.Sprint(i), Body: []byte(fmt.Sprintf(`{"i":%d}`, i))}
			results <- result{r, s.AppendAudit(ctx, r)}
		}()
	}
	half.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close closes the database only after the audit writer stopped.
	if err := writer(s).Ping(); err == nil {
		t.Fatal("Close returned with the database still open")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	stored := map[int64]string{}
	for range n {
		res := <-results
		switch {
		case res.err == nil:
			stored[res.rec.Seq] = string(res.rec.Body)
		case postern.IsKind(res.err, postern.KindUnavailable):
		default:
			t.Errorf("append during Close: %v", res.err)
		}
	}
	t.Logf("%d of %d appends made it before Close", len(stored), n)
	if err := s.AppendAudit(ctx, &postern.AuditRecord{}); !postern.IsKind(err, postern.KindUnavailable) {
		t.Errorf("append after Close: err = %v, want KindUnavailable", err)
	}

	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "auditWriter") {
		t.Errorf("the audit writer goroutine outlived Close:\n%s", stacks)
	}

	s2 := openAt(t, path)
	recs, err := s2.ScanAudit(ctx, 1, n+1)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, recs, len(stored))
	for _, r := range recs {
		if stored[r.Seq] != string(r.Body) {
			t.Errorf("record %d holds %s; its appender was told %q", r.Seq, r.Body, stored[r.Seq])
		}
	}
}

// BenchmarkAppendAudit measures audited calls per second: many goroutines
// append CloudTrail-sized records at once, as concurrent API requests do.
func BenchmarkAppendAudit(b *testing.B) {
	s := openTemp(b, Options{})
	body := bytes.Repeat([]byte("x"), 900)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			r := &postern.AuditRecord{
				EventID: "6c1b2b0e-6a3e-4a1f-9d9e-1f0c2f7b9d11", EventTime: time.Now(),
				EventName: "SendSSHPublicKey", EventSource: "ec2-instance-connect.amazonaws.com",
				UserName: "alice", AccessKeyID: "AKIAIOSFODNN7EXAMPLE",
				Resources: []string{"arn:aws:ec2:eu-west-1:123456789012:instance/i-0a000000000000001"},
				Body:      body,
			}
			if err := s.AppendAudit(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// TestLargeBatch holds the audit writer's first commit until a full batch
// has queued behind it, so that the next batch is written with several
// multi-row statements (records and their resources), and checks the
// chain and the resource index.
func TestLargeBatch(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	inFirst := make(chan struct{})
	commits := 0
	hook := func() error {
		commits++
		if commits == 1 {
			close(inFirst)
			<-release
		}
		return nil
	}
	const batch = 600 // more than the 512 the queue holds
	s := openTemp(t, Options{Store: sqlstore.Options{AuditBatch: batch, BeforeAuditCommit: hook}})
	first := make(chan error, 1)
	go func() { first <- s.AppendAudit(ctx, &postern.AuditRecord{EventID: "first", Body: []byte("first")}) }()
	<-inFirst
	errs := make(chan error, batch)
	for i := range batch {
		go func() {
			errs <- s.AppendAudit(ctx, &postern.AuditRecord{EventID: fmt.Sprint(i), Body: []byte(fmt.Sprint(i)),
				Resources: []string{"arn:aws:ec2:eu-west-1:123456789012:instance/i-big", fmt.Sprintf("arn:aws:iam::123456789012:user/u%d", i)}})
		}()
	}
	for s.QueuedAppends() < batch {
		runtime.Gosched()
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range batch {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if commits != 2 {
		t.Errorf("%d commits, want 2: the first record, then all %d queued behind it in one batch", commits, batch)
	}
	got, err := s.ScanAudit(ctx, 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, got, batch+1)
	byResource, err := s.LookupAudit(ctx, postern.AuditQuery{Resource: "arn:aws:ec2:eu-west-1:123456789012:instance/i-big", Limit: 1000})
	if err != nil || len(byResource) != batch {
		t.Errorf("lookup by the shared resource: %d records, %v; want %d", len(byResource), err, batch)
	}
	one, err := s.LookupAudit(ctx, postern.AuditQuery{Resource: "arn:aws:iam::123456789012:user/u599"})
	if err != nil || len(one) != 1 || string(one[0].Body) != "599" {
		t.Errorf("lookup by one record's resource: %+v, %v", one, err)
	}
}
