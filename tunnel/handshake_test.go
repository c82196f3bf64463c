package tunnel_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/postern-dev/postern/tunnel"
)

func TestWriteHandshakeError(t *testing.T) {
	rec := httptest.NewRecorder()
	tunnel.WriteHandshakeError(rec, http.StatusForbidden, "AccessDeniedException",
		`User "alice" is not authorized to perform ec2-instance-connect:OpenTunnel`, "req-42")
	res := rec.Result()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("status %d", res.StatusCode)
	}
	for h, want := range map[string]string{
		"Content-Type":     "application/json",
		"x-amzn-RequestId": "req-42",
		"x-amzn-ErrorType": "AccessDeniedException",
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	var body map[string]string
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ErrorCode": "AccessDeniedException",
		"Message":   `User "alice" is not authorized to perform ec2-instance-connect:OpenTunnel`,
	}
	if len(body) != len(want) || body["ErrorCode"] != want["ErrorCode"] || body["Message"] != want["Message"] {
		t.Errorf("body %v, want %v", body, want)
	}
}
