package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/recording"
)

// record writes a recording through the server's own recorder, as a
// console terminal session does, and returns its file's bytes.
func (e *testEnv) record(m recording.Meta, output []byte, finish bool) []byte {
	e.t.Helper()
	s, err := e.srv.Recorder().Start(e.t.Context(), m)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := s.Output(output); err != nil {
		e.t.Fatal(err)
	}
	if !finish {
		// Still being written: what is on disk so far is what exports.
		e.t.Cleanup(func() { s.Close(e.t.Context()) })
		return nil
	}
	if err := s.Close(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	path, _ := e.srv.Recorder().Path(m.ID)
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func TestRecordingCommands(t *testing.T) {
	e := startServer(t)
	const i1, i2 = "i-0123456789abcdef0", "i-0fedcba9876543210"
	small := e.record(recording.Meta{ID: "rec-00000000000000001", User: "alice", InstanceID: i1, OSUser: "ec2-user", Cols: 100, Rows: 30},
		[]byte("$ echo $((6*7))\r\n42\r\n"), true)
	// Bigger than one GetRecordingContent piece: export pages.
	big := e.record(recording.Meta{ID: "rec-00000000000000002", User: "bob", InstanceID: i2, OSUser: "admin"},
		bytes.Repeat([]byte("0123456789abcdef\xff"), 100_000), true)
	e.record(recording.Meta{ID: "rec-00000000000000003", User: "alice", InstanceID: i2, OSUser: "ec2-user"}, []byte("live"), false)

	var list struct {
		Recordings []struct {
			RecordingId, UserName, InstanceId, OsUser string
			EndTime                                   *float64
			Size, Events                              int64
			Cols, Rows                                int
		}
	}
	e.okJSON(&list, "recording", "list")
	if len(list.Recordings) != 3 || list.Recordings[0].RecordingId != "rec-00000000000000003" || list.Recordings[2].RecordingId != "rec-00000000000000001" {
		t.Fatalf("recording list = %+v; want the three, newest first", list)
	}
	if r := list.Recordings[2]; r.UserName != "alice" || r.InstanceId != i1 || r.OsUser != "ec2-user" || r.Cols != 100 || r.Rows != 30 ||
		r.EndTime == nil || r.Size != int64(len(small)) || r.Events != 1 {
		t.Errorf("the first recording = %+v (file of %d bytes)", r, len(small))
	}
	if list.Recordings[0].EndTime != nil {
		t.Errorf("a recording in progress has an end: %+v", list.Recordings[0])
	}
	e.okJSON(&list, "recording", "list", "--user", "alice", "--instance-id", i2)
	if len(list.Recordings) != 1 || list.Recordings[0].RecordingId != "rec-00000000000000003" {
		t.Errorf("recording list --user alice --instance-id %s = %+v", i2, list)
	}
	e.okJSON(&list, "recording", "list", "--max", "2")
	if len(list.Recordings) != 2 {
		t.Errorf("--max 2 listed %d", len(list.Recordings))
	}
	rows := tableRows(e.ok("recording", "list", "--user", "bob"))
	if len(rows) != 1 || rows[0][0] != "rec-00000000000000002" || rows[0][1] != "bob" || rows[0][3] != "admin" {
		t.Errorf("recording list table = %q", rows)
	}

	if out := e.ok("recording", "export", "rec-00000000000000001"); out != string(small) {
		t.Errorf("export to stdout = %q, want %q", out, small)
	}
	file := filepath.Join(t.TempDir(), "big.cast")
	if out := e.ok("recording", "export", "rec-00000000000000002", "--output-file", file); !strings.Contains(out, file) {
		t.Errorf("export --output-file printed %q", out)
	}
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("exported file: %d bytes (%v), want the %d of the recording", len(got), err, len(big))
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("exported file mode: %v", err)
	}
	if out := e.ok("recording", "export", "rec-00000000000000003"); !strings.HasPrefix(out, `{"version":2,`) {
		t.Errorf("export of a recording in progress = %q", out)
	}

	e.fails(1, []string{"ResourceNotFoundException", "rec-00000000000000009"}, "recording", "export", "rec-00000000000000009")
	e.fails(1, []string{"ValidationException"}, "recording", "export", "../postern.db")
	e.fails(2, []string{"one RECORDING_ID"}, "recording", "export")
	e.fails(2, []string{"--since", "RFC 3339"}, "recording", "list", "--since", "yesterday")
	e.okJSON(&list, "recording", "list", "--since", "1h")
	if len(list.Recordings) != 3 {
		t.Errorf("--since 1h listed %d", len(list.Recordings))
	}

	// Paging, and a token that no page gave.
	cfg, err := connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	page, err := client.ListRecordings(t.Context(), cfg, &client.ListRecordingsInput{MaxResults: 2})
	if err != nil || len(page.Recordings) != 2 || page.NextToken == "" {
		t.Fatalf("ListRecordings of 2: %+v, %v", page, err)
	}
	page, err = client.ListRecordings(t.Context(), cfg, &client.ListRecordingsInput{MaxResults: 2, NextToken: page.NextToken})
	if err != nil || len(page.Recordings) != 1 || page.Recordings[0].RecordingID != "rec-00000000000000001" || page.NextToken != "" {
		t.Errorf("the second page: %+v, %v", page, err)
	}
	if _, err := client.ListRecordings(t.Context(), cfg, &client.ListRecordingsInput{NextToken: "bogus"}); err == nil || !strings.Contains(err.Error(), "InvalidNextTokenException") {
		t.Errorf("ListRecordings with a made-up token: %v", err)
	}

	// Policy: listing and reading are separate actions on recordings.
	e.ok("user", "create", "erin")
	var k struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey string }
	}
	e.okJSON(&k, "access-key", "create", "--user", "erin")
	e.ok("policy", "put", "--user", "erin", "--name", "ListOnly", "--document",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"postern:ListRecordings","Resource":"*"}]}`)
	t.Run("as erin", func(t *testing.T) {
		asKey(t, k.AccessKey.AccessKeyId, k.AccessKey.SecretAccessKey)
		e.okJSON(&list, "recording", "list")
		if len(list.Recordings) != 3 {
			t.Errorf("erin lists %d recordings", len(list.Recordings))
		}
		e.fails(1, []string{"AccessDenied", "postern:GetRecording"}, "recording", "export", "rec-00000000000000001")
	})
	var ev struct {
		Events []struct {
			EventName       string
			Resources       []struct{ ResourceType, ResourceName string }
			CloudTrailEvent struct {
				ErrorCode string `json:"errorCode"`
			}
		}
	}
	e.okJSON(&ev, "audit", "lookup", "--user", "erin", "--event-name", "GetRecordingContent")
	if len(ev.Events) != 1 || !strings.Contains(ev.Events[0].CloudTrailEvent.ErrorCode, "AccessDenied") ||
		len(ev.Events[0].Resources) != 1 || !strings.HasSuffix(ev.Events[0].Resources[0].ResourceName, ":recording/rec-00000000000000001") {
		t.Errorf("erin's denied export in the audit trail = %+v", ev)
	}
}
