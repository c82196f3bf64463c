package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	_ "modernc.org/sqlite" // the driver the server uses, to tamper with its file
)

// verifyTrail runs `postern audit verify` against s with the data
// directory's pinned public key.
func verifyTrail(t *testing.T, s *server) (output string, code int) {
	t.Helper()
	out, errOut, code := s.postern(t, "audit", "verify", "--public-key", filepath.Join(s.DataDir, "audit.pub"))
	return out + errOut, code
}

// copyDir copies the regular files of a stopped server's data directory.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(filepath.Join(to, e.Name()), os.O_CREATE|os.O_WRONLY|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// openDB opens a stopped server's database directly.
func openDB(t *testing.T, dataDir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "postern.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// seqOf returns the seq of the audit record of the call that created user
// name.
func seqOf(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	rows, err := db.Query(`SELECT seq, body FROM audit_records WHERE event_name = 'CreateUser' AND error_code = '' ORDER BY seq`)
	if err != nil {
		t.Fatalf("read audit_records: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(body, []byte(`"`+name+`"`)) {
			return seq
		}
	}
	t.Fatalf("no audit record of CreateUser %s", name)
	return 0
}

// TestAuditTamper alters and removes records directly in the database of
// a stopped server and checks that `postern audit verify` names them,
// while an untouched trail verifies before and after a restart.
func TestAuditTamper(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ctx := context.Background()
	ic, ec := s.adminIAM(), s.adminEC2()
	for _, name := range []string{"u1", "u2", "u3", "u4"} {
		if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
			t.Fatalf("CreateUser %s: %v", name, err)
		}
		if _, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
			t.Fatalf("DescribeVpcs: %v", err)
		}
	}
	_, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{"vpc-nope"}})
	apiError(t, err)

	out, code := verifyTrail(t, s)
	if code != 0 || !regexp.MustCompile(`(?m)^OK: \d+ records`).MatchString(out) {
		t.Fatalf("postern audit verify on an untouched server: exit %d\n%s", code, out)
	}
	s.Stop(t)
	if t.Failed() {
		return
	}

	t.Run("untouched", func(t *testing.T) {
		t.Parallel()
		r := startServerIn(t, copyDir(t, s.DataDir))
		if out, code := verifyTrail(t, r); code != 0 {
			t.Fatalf("postern audit verify after a restart: exit %d\n%s", code, out)
		}
	})

	t.Run("altered", func(t *testing.T) {
		t.Parallel()
		dir := copyDir(t, s.DataDir)
		db := openDB(t, dir)
		seq := seqOf(t, db, "u2")
		var body []byte
		if err := db.QueryRow(`SELECT body FROM audit_records WHERE seq = ?`, seq).Scan(&body); err != nil {
			t.Fatal(err)
		}
		// Still valid JSON, and the event id is unchanged: only the chain
		// hash can tell.
		altered := bytes.Replace(body, []byte(`"u2"`), []byte(`"u9"`), -1)
		if res, err := db.Exec(`UPDATE audit_records SET body = ? WHERE seq = ?`, altered, seq); err != nil {
			t.Fatal(err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("altered %d records", n)
		}
		db.Close()

		wantVerifyFails(t, dir, seq, "altered", "altered")
	})

	// Blanking the columns lookups search, and the record's rows in the
	// resource index, hides a record from every lookup while its body and
	// the chain stay as signed: verify holds them to the body.
	t.Run("hidden from lookups", func(t *testing.T) {
		t.Parallel()
		dir := copyDir(t, s.DataDir)
		db := openDB(t, dir)
		seq := seqOf(t, db, "u4")
		execOnRecord(t, db, seq,
			`UPDATE audit_records SET user_name = '', access_key_id = '', error_code = '', event_name = '', event_source = '',
				resources = '[]', event_time = NULL WHERE seq = ?`,
			`DELETE FROM audit_resources WHERE seq = ?`)
		wantVerifyFails(t, dir, seq, "hidden from lookups", "altered")
	})

	t.Run("removed", func(t *testing.T) {
		t.Parallel()
		dir := copyDir(t, s.DataDir)
		db := openDB(t, dir)
		seq := seqOf(t, db, "u3")
		execOnRecord(t, db, seq, `DELETE FROM audit_records WHERE seq = ?`, `DELETE FROM audit_resources WHERE seq = ?`)
		wantVerifyFails(t, dir, seq, "removed", "(removed|missing)")
	})
}

// execOnRecord runs each query with seq as its argument, then closes db.
func execOnRecord(t *testing.T, db *sql.DB, seq int64, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if _, err := db.Exec(q, seq); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
}

// wantVerifyFails starts a server on dir, in which record seq was
// tampered with (what says how), and checks that postern audit verify
// fails and names the record on a line matching says.
func wantVerifyFails(t *testing.T, dir string, seq int64, what, says string) {
	t.Helper()
	out, code := verifyTrail(t, startServerIn(t, dir))
	if code == 0 {
		t.Fatalf("postern audit verify exits 0 after record %d was %s:\n%s", seq, what, out)
	}
	if !regexp.MustCompile(fmt.Sprintf(`(?m)record %d\b.*%s`, seq, says)).MatchString(out) {
		t.Errorf("postern audit verify does not say that record %d was %s:\n%s", seq, what, out)
	}
}
