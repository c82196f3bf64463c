package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern-dev/postern/recording"
	"github.com/postern-dev/postern/store/sqlite"
)

// TestRecordings lists and exports a console session recording through a
// real server. No terminal writes one yet here, so the recording is made
// with the server stopped, with the recorder the server uses, in its data
// directory.
func TestRecordings(t *testing.T) {
	first := startServer(t)
	e, _, code := first.postern(t, "recording", "list", "--output", "json")
	if code != 0 || strings.TrimSpace(e) != `{
  "Recordings": []
}` {
		t.Fatalf("recording list on a new server: exit %d, %q", code, e)
	}
	first.Stop(t)

	st, err := sqlite.Open(t.Context(), filepath.Join(first.DataDir, "postern.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := recording.New(filepath.Join(first.DataDir, recording.DirName), st)
	s, err := r.Start(t.Context(), recording.Meta{ID: "rec-0000000000000e2e0", User: "admin", InstanceID: "i-0123456789abcdef0", OSUser: "ec2-user", Cols: 80, Rows: 24})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return s.Input([]byte("echo $((6*7))\r")) },
		func() error { return s.Output([]byte("42\r\n\xe2\x82")) },
		func() error { return s.Output([]byte("\xac\r\n")) },
		func() error { return s.Resize(132, 43) },
		func() error { return s.Close(t.Context()) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(first.DataDir, recording.DirName, "rec-0000000000000e2e0.cast"))
	if err != nil {
		t.Fatal(err)
	}

	srv := startServerIn(t, first.DataDir)
	out, errOut, code := srv.postern(t, "recording", "list", "--instance-id", "i-0123456789abcdef0")
	if code != 0 || !strings.Contains(out, "rec-0000000000000e2e0") || !strings.Contains(out, "ec2-user") {
		t.Fatalf("recording list: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = srv.postern(t, "recording", "export", "rec-0000000000000e2e0")
	if code != 0 || out != string(want) {
		t.Fatalf("recording export: exit %d, %q, want %q (%s)", code, out, want, errOut)
	}
	if !strings.Contains(out, `"42\r\n€\r\n"`) && !strings.Contains(out, `"€\r\n"`) {
		t.Errorf("the split € did not play back whole:\n%s", out)
	}
	_, errOut, code = srv.postern(t, "recording", "export", "rec-0000000000000dead")
	if code != 1 || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("export of a missing recording: exit %d, %q", code, errOut)
	}
	// Every call is in the trail.
	out, _, code = srv.postern(t, "audit", "lookup", "--event-name", "GetRecordingContent")
	if code != 0 || !strings.Contains(out, "recording/rec-0000000000000e2e0") {
		t.Errorf("audit lookup of GetRecordingContent: exit %d\n%s", code, out)
	}
}
