package api

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/store/sqlite/sqlitetest"
)

// TestServeAs: a call made as a principal authenticated elsewhere is
// authorized, throttled per user and audited like a signed one, with no
// access key and the console's marks.
func TestServeAs(t *testing.T) {
	st, sealer := sqlitetest.Open(t)
	auth := authority.New(authority.Config{Region: "us-east-1", Account: "123456789012"}, st, sealer, nil)
	u, err := auth.CreateUser(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	s := New(Config{Authority: auth, Trail: audit.NewTrail(st, key, nil), Throttle: ThrottleConfig{Rate: 0.001, Burst: 2}})
	p := &authority.Principal{User: *u, ARN: auth.UserARN("alice"), MFA: true}

	call := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "https://postern.test/console/api/aws", strings.NewReader("Action=DescribeInstances&Version=2016-11-15"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.7:4000"
		w := httptest.NewRecorder()
		s.ServeAs(w, r, p, authority.Env{UserAgent: "browser/1"})
		return w
	}
	for i := range 2 {
		if w := call(); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "<Code>UnauthorizedOperation</Code>") {
			t.Fatalf("call %d: %d %s; want UnauthorizedOperation", i, w.Code, w.Body)
		}
	}
	if w := call(); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "<Code>ThrottlingException</Code>") ||
		!strings.Contains(w.Body.String(), "console user alice") {
		t.Fatalf("third call: %d %s; want ThrottlingException for the console user", w.Code, w.Body)
	}

	recs, err := st.LookupAudit(t.Context(), postern.AuditQuery{EventName: "DescribeInstances", Limit: 10})
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records (%v), want 3", len(recs), err)
	}
	decided := 0
	for _, rec := range recs {
		var ev audit.Event
		if err := json.Unmarshal(rec.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.UserIdentity.UserName != "alice" || ev.UserIdentity.AccessKeyID != "" || ev.SourceIPAddress != "192.0.2.7" || ev.UserAgent != "browser/1" {
			t.Errorf("record %+v", ev)
		}
		if ev.AdditionalEventData["sessionType"] != "console" || ev.AdditionalEventData["mfaAuthenticated"] != true {
			t.Errorf("additionalEventData %v", ev.AdditionalEventData)
		}
		if ev.AdditionalEventData["policyDecisions"] != nil {
			decided++
		}
	}
	if decided != 2 {
		t.Errorf("%d records note a policy decision, want the two denials", decided)
	}
}
