package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// auditEvent is one event of LookupEvents, with its CloudTrail record
// parsed.
type auditEvent struct {
	EventName       string
	EventID         string `json:"EventId"`
	Username        string
	AccessKeyID     string `json:"AccessKeyId"`
	CloudTrailEvent string
	Record          map[string]any `json:"-"`
}

// lookupEvents calls LookupEvents as the admin with the given request
// body and returns every event on the first page (up to 1000).
func (s *server) lookupEvents(t *testing.T, in map[string]any) []auditEvent {
	t.Helper()
	if in["MaxResults"] == nil {
		in["MaxResults"] = 1000
	}
	body, _ := json.Marshal(in)
	var r response
	// On a throttled server the admin may have to wait for a token.
	waitFor(t, "LookupEvents not to be throttled", 30*time.Second, func() bool {
		r = s.do(t, request{Target: cloudTrailTarget + ".LookupEvents", Body: body, Creds: s.admin()})
		return r.Code != "ThrottlingException"
	})
	if r.Status != http.StatusOK {
		t.Fatalf("LookupEvents: %v", r)
	}
	var out struct{ Events []auditEvent }
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("LookupEvents answer: %v\n%s", err, r.Body)
	}
	for i := range out.Events {
		if err := json.Unmarshal([]byte(out.Events[i].CloudTrailEvent), &out.Events[i].Record); err != nil {
			t.Fatalf("CloudTrailEvent of %s is not JSON: %v", out.Events[i].EventID, err)
		}
	}
	return out.Events
}

// findAudit returns the audit record of the call with requestID, looked up
// by event name (or among errors when eventName is ""). It fails the test
// when there is none.
func (s *server) findAudit(t *testing.T, eventName, requestID string) map[string]any {
	t.Helper()
	if requestID == "" {
		t.Fatal("findAudit: the call had no request id")
	}
	in := map[string]any{"ErrorsOnly": true}
	if eventName != "" {
		in = map[string]any{"LookupAttributes": []map[string]string{{"AttributeKey": "EventName", "AttributeValue": eventName}}}
	}
	events := s.lookupEvents(t, in)
	for _, ev := range events {
		if ev.Record["requestID"] == requestID {
			if eventName != "" && ev.EventName != eventName {
				t.Errorf("LookupEvents by EventName %s returned a %s event", eventName, ev.EventName)
			}
			return ev.Record
		}
	}
	t.Fatalf("no audit record with requestID %s among %d events (lookup %v)", requestID, len(events), in)
	return nil
}

// wantAudited asserts that the call with requestID was audited with
// errorCode (and, for calls that named a key, that key).
func (s *server) wantAudited(t *testing.T, eventName, requestID, errorCode, accessKeyID string) map[string]any {
	t.Helper()
	rec := s.findAudit(t, eventName, requestID)
	if got, _ := rec["errorCode"].(string); got != errorCode {
		t.Errorf("audit record of %s: errorCode %q, want %q", requestID, got, errorCode)
	}
	if errorCode != "" {
		if msg, _ := rec["errorMessage"].(string); msg == "" {
			t.Errorf("audit record of %s has no errorMessage", requestID)
		}
	}
	if ip, _ := rec["sourceIPAddress"].(string); ip != "127.0.0.1" {
		t.Errorf("audit record of %s: sourceIPAddress %q, want 127.0.0.1", requestID, ip)
	}
	if accessKeyID != "" {
		id, _ := rec["userIdentity"].(map[string]any)["accessKeyId"].(string)
		if id != accessKeyID {
			t.Errorf("audit record of %s: userIdentity.accessKeyId %q, want %q", requestID, id, accessKeyID)
		}
	}
	return rec
}
