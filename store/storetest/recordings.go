package storetest

import (
	"fmt"
	"testing"

	"github.com/postern-dev/postern"
)

func createRecording(t *testing.T, s postern.Store, id, user, instance string, at int) *postern.Recording {
	t.Helper()
	r := &postern.Recording{
		ID: id, UserName: user, UserARN: "arn:aws:iam::123456789012:user/" + user, InstanceID: instance,
		OSUser: "ec2-user", SourceIP: "192.0.2.7", Cols: 120, Rows: 40, StartedAt: stamp(at),
	}
	ok(t, s.CreateRecording(t.Context(), r), "CreateRecording "+id)
	return r
}

func testRecordings(t *testing.T, s postern.Store) {
	ctx := t.Context()
	_, err := s.GetRecording(ctx, "rec-1")
	wantKind(t, err, postern.KindNotFound, "GetRecording of a missing recording", "rec-1")
	wantKind(t, s.FinishRecording(ctx, "rec-1", postern.RecordingEnd{EndedAt: stamp(2)}), postern.KindNotFound, "FinishRecording of a missing recording", "rec-1")

	// The user need not exist: recordings outlive users.
	r := createRecording(t, s, "rec-1", "alice", "i-0123456789abcdef0", 1)
	wantKind(t, s.CreateRecording(ctx, r), postern.KindExists, "CreateRecording twice", "rec-1")
	got, err := s.GetRecording(ctx, "rec-1")
	ok(t, err, "GetRecording")
	if got.UserName != "alice" || got.UserARN != r.UserARN || got.InstanceID != r.InstanceID || got.OSUser != "ec2-user" ||
		got.SourceIP != r.SourceIP || got.Cols != 120 || got.Rows != 40 || got.Size != 0 || got.Events != 0 || got.Error != "" {
		t.Errorf("GetRecording = %+v, want %+v", got, r)
	}
	sameTime(t, "recording StartedAt", got.StartedAt, r.StartedAt)
	if !got.EndedAt.IsZero() {
		t.Errorf("a recording in progress has EndedAt %s", got.EndedAt)
	}

	end := postern.RecordingEnd{EndedAt: stamp(60), Size: 4096, Events: 17, Error: "disk full"}
	ok(t, s.FinishRecording(ctx, "rec-1", end), "FinishRecording")
	wantKind(t, s.FinishRecording(ctx, "rec-1", end), postern.KindConflict, "FinishRecording twice", "rec-1")
	got, err = s.GetRecording(ctx, "rec-1")
	ok(t, err, "GetRecording after FinishRecording")
	if got.Size != 4096 || got.Events != 17 || got.Error != "disk full" {
		t.Errorf("finished recording = %+v, want size 4096, 17 events, error %q", got, end.Error)
	}
	sameTime(t, "recording EndedAt", got.EndedAt, end.EndedAt)
}

func testRecordingsList(t *testing.T, s postern.Store) {
	ctx := t.Context()
	rs, next, err := s.ListRecordings(ctx, postern.RecordingFilter{})
	ok(t, err, "ListRecordings of none")
	if len(rs) != 0 || next != "" {
		t.Errorf("ListRecordings of none = %+v, %q", rs, next)
	}
	// Two recordings share a start time: the id breaks the tie.
	createRecording(t, s, "rec-a", "alice", "i-0000000000000000a", 1)
	createRecording(t, s, "rec-b", "bob", "i-0000000000000000a", 2)
	createRecording(t, s, "rec-c", "alice", "i-0000000000000000b", 3)
	createRecording(t, s, "rec-d", "alice", "i-0000000000000000a", 3)
	createRecording(t, s, "rec-e", "bob", "i-0000000000000000b", 5)

	for _, tc := range []struct {
		f    postern.RecordingFilter
		want string
	}{
		{postern.RecordingFilter{}, "[rec-e rec-d rec-c rec-b rec-a]"},
		{postern.RecordingFilter{User: "alice"}, "[rec-d rec-c rec-a]"},
		{postern.RecordingFilter{InstanceID: "i-0000000000000000a"}, "[rec-d rec-b rec-a]"},
		{postern.RecordingFilter{User: "bob", InstanceID: "i-0000000000000000b"}, "[rec-e]"},
		{postern.RecordingFilter{Since: stamp(3)}, "[rec-e rec-d rec-c]"},
		{postern.RecordingFilter{User: "nobody"}, "[]"},
	} {
		rs, next, err := s.ListRecordings(ctx, tc.f)
		ok(t, err, fmt.Sprintf("ListRecordings(%+v)", tc.f))
		if got := recordingIDs(rs); got != tc.want || next != "" {
			t.Errorf("ListRecordings(%+v) = %s, next %q; want %s and no next page", tc.f, got, next, tc.want)
		}
	}

	// Paging by twos walks every recording once, ties included.
	var pages []string
	f := postern.RecordingFilter{Limit: 2}
	for range 5 {
		rs, next, err := s.ListRecordings(ctx, f)
		ok(t, err, "ListRecordings page")
		pages = append(pages, recordingIDs(rs))
		if next == "" {
			break
		}
		f.Token = next
	}
	if got := fmt.Sprint(pages); got != "[[rec-e rec-d] [rec-c rec-b] [rec-a]]" {
		t.Errorf("pages of two = %s", got)
	}
	// A filter and a token together.
	rs, next, err = s.ListRecordings(ctx, postern.RecordingFilter{User: "alice", Limit: 1, Token: "rec-d"})
	ok(t, err, "ListRecordings of alice after rec-d")
	if got := recordingIDs(rs); got != "[rec-c]" || next != "rec-c" {
		t.Errorf("alice after rec-d = %s, next %q; want [rec-c], next rec-c", got, next)
	}
	_, _, err = s.ListRecordings(ctx, postern.RecordingFilter{Token: "rec-zzz"})
	wantKind(t, err, postern.KindInvalid, "ListRecordings with a made-up token", "token")
}

func recordingIDs(rs []postern.Recording) string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return fmt.Sprint(ids)
}
