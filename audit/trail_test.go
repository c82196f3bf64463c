package audit

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRecordCompletesTheEvent(t *testing.T) {
	tr, st, _ := newTestTrail(t, 0)
	ctx := context.Background()
	before := time.Now()
	ev := &Event{
		EventSource: "iam.amazonaws.com", EventName: "CreateUser",
		UserIdentity: UserIdentity{Type: "IAMUser", UserName: "admin", AccessKeyID: "AKIAEXAMPLE"},
		ErrorCode:    "AccessDenied",
		Resources: []Resource{
			{ARN: "arn:aws:iam::123456789012:user/bob", Type: "AWS::IAM::User"},
			{Type: "nameless"},
			{ARN: "arn:aws:iam::123456789012:group/ops"},
		},
	}
	rec, err := tr.Record(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	if ev.EventVersion != EventVersion || !uuidV4.MatchString(ev.EventID) {
		t.Errorf("version %q, id %q", ev.EventVersion, ev.EventID)
	}
	if ev.EventTime.Location() != time.UTC || ev.EventTime.Before(before.Add(-time.Second)) || ev.EventTime.After(time.Now()) {
		t.Errorf("event time %v", ev.EventTime)
	}
	want := postern.AuditRecord{
		Seq: 1, EventID: ev.EventID, EventTime: ev.EventTime, EventName: "CreateUser",
		EventSource: "iam.amazonaws.com", UserName: "admin", AccessKeyID: "AKIAEXAMPLE", ErrorCode: "AccessDenied",
		Resources: []string{"arn:aws:iam::123456789012:user/bob", "arn:aws:iam::123456789012:group/ops"},
		Body:      rec.Body, PrevHash: postern.GenesisHash, Hash: postern.ChainHash(postern.GenesisHash, 1, rec.Body),
	}
	if !reflect.DeepEqual(*rec, want) {
		t.Errorf("record\n got %+v\nwant %+v", *rec, want)
	}
	if !reflect.DeepEqual(st.recs[0], want) {
		t.Errorf("stored %+v", st.recs[0])
	}
	// The body is the event, in CloudTrail's field names and order.
	var back Event
	if err := json.Unmarshal(rec.Body, &back); err != nil {
		t.Fatal(err)
	}
	if back.EventID != ev.EventID || !back.EventTime.Equal(ev.EventTime) || back.UserIdentity != ev.UserIdentity {
		t.Errorf("body %s", rec.Body)
	}
	if !strings.HasPrefix(string(rec.Body), `{"eventVersion":"1.08","eventTime":"`) {
		t.Errorf("body does not start as CloudTrail's records do: %s", rec.Body)
	}
}

func TestRecordKeepsWhatIsGiven(t *testing.T) {
	tr, _, _ := newTestTrail(t, 0)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	ev := &Event{EventVersion: "1.09", EventID: "given-id", EventTime: at, EventName: "X"}
	rec, err := tr.Record(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if ev.EventVersion != "1.09" || ev.EventID != "given-id" || rec.EventID != "given-id" {
		t.Errorf("overwrote given fields: %+v", ev)
	}
	if !ev.EventTime.Equal(at) || ev.EventTime.Location() != time.UTC {
		t.Errorf("event time %v, want %v in UTC", ev.EventTime, at)
	}
	if !strings.Contains(string(rec.Body), `"eventTime":"2026-03-01T11:00:00Z"`) {
		t.Errorf("body time: %s", rec.Body)
	}
}

func TestRecordIsCanonical(t *testing.T) {
	tr, _, _ := newTestTrail(t, 0)
	mk := func() *Event {
		return &Event{
			EventID: "same", EventTime: time.Unix(1e9, 0),
			RequestParameters: map[string]any{"b": 1, "a": map[string]any{"z": true, "y": []any{"x", 2.5}}, "c": "<&>"},
		}
	}
	r1, err1 := tr.Record(context.Background(), mk())
	r2, err2 := tr.Record(context.Background(), mk())
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if string(r1.Body) != string(r2.Body) {
		t.Errorf("the same event encoded twice differs:\n%s\n%s", r1.Body, r2.Body)
	}
	if !strings.Contains(string(r1.Body), `"requestParameters":{"a":{"y":["x",2.5],"z":true},"b":1,"c":"\u003c\u0026\u003e"}`) {
		t.Errorf("maps are not sorted or not escaped: %s", r1.Body)
	}
}

func TestRecordFailsClosed(t *testing.T) {
	tr, st, _ := newTestTrail(t, 1)
	ctx := context.Background()
	cause := errors.New("disk full")
	st.fail = cause
	_, err := tr.Record(ctx, &Event{EventName: "X"})
	if !postern.IsKind(err, postern.KindInternal) || !errors.Is(err, cause) {
		t.Errorf("a failed append answered %v", err)
	}
	var pe *postern.Error
	if errors.As(err, &pe) && strings.Contains(pe.Message, "disk full") {
		t.Errorf("the cause leaks into the caller's message: %q", pe.Message)
	}
	st.fail = nil
	_, err = tr.Record(ctx, &Event{EventName: "X", RequestParameters: map[string]any{"c": make(chan int)}})
	if !postern.IsKind(err, postern.KindInternal) {
		t.Errorf("an event that cannot be encoded answered %v", err)
	}
	if len(st.recs) != 1 {
		t.Errorf("%d records stored, want 1", len(st.recs))
	}
}

func TestRecordConcurrently(t *testing.T) {
	tr, st, pub := newTestTrail(t, 0)
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make([]string, 64)
	for i := range ids {
		wg.Go(func() {
			rec, err := tr.Record(ctx, &Event{EventName: "Parallel"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = rec.EventID
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("event id %s repeats", id)
		}
		seen[id] = true
	}
	if _, err := tr.Digest(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, st, pub)
	if err != nil || !rep.OK() || rep.Records != len(ids) {
		t.Fatalf("%v\n%s", err, rep)
	}
}

func TestNewTrailNeedsAKey(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewTrail accepted a nil key")
		}
	}()
	NewTrail(&memStore{}, nil, nil)
}
