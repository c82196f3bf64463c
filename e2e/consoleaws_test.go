package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// consoleCall sends an AWS API request (built as request describes it,
// unsigned) to /console/api/aws with cookie and the console's Origin,
// unless hdr overrides it.
func (s *server) consoleCall(t *testing.T, req request, cookie *http.Cookie, hdr map[string]string) response {
	t.Helper()
	hr := s.build(t, req)
	hr.URL.Path = "/console/api/aws"
	hr.Header.Set("Origin", s.URL)
	hr.Header.Set("User-Agent", "console-e2e/1.0")
	for k, v := range hdr {
		hr.Header.Set(k, v)
	}
	if cookie != nil {
		hr.AddCookie(cookie)
	}
	return s.send(t, hr)
}

// TestConsoleAWSCalls: the console's pages call the AWS API with the
// session cookie instead of SigV4, through the same policy evaluation
// and audit as any client; the static pages come with their headers.
func TestConsoleAWSCalls(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	if _, errOut, code := s.postern(t, "user", "create", "erin"); code != 0 {
		t.Fatalf("postern user create: exit %d: %s", code, errOut)
	}
	const pw = "copper willow stream 58"
	s.setPassword(t, "erin", pw)
	r := s.signIn(t, "erin", pw, "")
	r.want(t, "sign in", http.StatusOK, "")
	cookie := r.cookie
	noteSecret(cookie.Value, "erin's session cookie")

	describe := request{Form: ec2Form("DescribeInstances")}
	lookup := request{Target: cloudTrailTarget + ".LookupEvents",
		Body: []byte(`{"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"DescribeInstances"}]}`)}

	// No session, or another site: the console's own JSON errors.
	for _, c := range []struct {
		what   string
		cookie *http.Cookie
		hdr    map[string]string
		status int
		code   string
	}{
		{"no cookie", nil, nil, http.StatusUnauthorized, "NotSignedIn"},
		{"a forged cookie", &http.Cookie{Name: "postern_console", Value: strings.Repeat("A", 43)}, nil, http.StatusUnauthorized, "NotSignedIn"},
		{"another origin", cookie, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden, "CrossSiteRequestRefused"},
		{"a cross-site fetch", cookie, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden, "CrossSiteRequestRefused"},
	} {
		a := s.consoleCall(t, describe, c.cookie, c.hdr)
		var body map[string]string
		_ = json.Unmarshal(a.Body, &body)
		if a.Status != c.status || body["error"] != c.code {
			t.Errorf("%s: %v %s; want %d %s", c.what, a, a.Body, c.status, c.code)
		}
	}

	// Without a policy: AWS's own denials, audited in erin's name.
	s.consoleCall(t, describe, cookie, nil).want(t, http.StatusForbidden, "UnauthorizedOperation")
	s.consoleCall(t, lookup, cookie, nil).want(t, http.StatusForbidden, "AccessDeniedException")
	for _, name := range []string{"DescribeInstances", "LookupEvents"} {
		evs := s.auditEvents(t, name)
		if len(evs) != 1 {
			t.Fatalf("%d %s records, want the denial", len(evs), name)
		}
		wantConsoleRecord(t, evs[0], "erin")
		if evs[0]["errorCode"] == nil {
			t.Errorf("%s denial recorded without an error: %v", name, evs[0])
		}
		wantDecision(t, evs[0], map[string]string{"DescribeInstances": "ec2:DescribeInstances", "LookupEvents": "cloudtrail:LookupEvents"}[name], "implicitDeny", "")
	}

	// With one: the AWS answers, and LookupEvents finds the denial.
	putPolicy(t, s, "--user", "erin", "console-read",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:DescribeInstances","cloudtrail:LookupEvents"],"Resource":"*"}]}`)
	a := s.consoleCall(t, describe, cookie, nil)
	a.want200(t)
	if !strings.Contains(string(a.Body), "<DescribeInstancesResponse") {
		t.Errorf("DescribeInstances answer %.300s", a.Body)
	}
	a = s.consoleCall(t, lookup, cookie, nil)
	a.want200(t)
	var events struct {
		Events []struct{ EventName, Username, CloudTrailEvent string }
	}
	if err := json.Unmarshal(a.Body, &events); err != nil || len(events.Events) != 2 {
		t.Fatalf("LookupEvents: %v, %.600s; want the denial and the success", err, a.Body)
	}
	for _, e := range events.Events {
		if e.Username != "erin" || !strings.Contains(e.CloudTrailEvent, `"sessionType":"console"`) {
			t.Errorf("looked-up event %+v", e)
		}
	}
	// A bad body is AWS's error, in erin's name.
	s.consoleCall(t, request{Target: cloudTrailTarget + ".LookupEvents", Body: []byte("{")}, cookie, nil).
		want(t, http.StatusBadRequest, "SerializationException")

	// The static pages.
	resp, err := s.httpClient.Get(s.URL + "/console/instances")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		resp.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(csp, "script-src 'self';") ||
		!regexp.MustCompile(`<meta name="csp-nonce" content="[^"]+">`).Match(page) {
		t.Errorf("GET /console/instances: %d %v %.200s", resp.StatusCode, resp.Header, page)
	}
	resp, err = s.httpClient.Get(s.URL + "/console/api/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /console/api/nothing: %d, want 404", resp.StatusCode)
	}
	assertNoLeaks(t, s)
}

// wantConsoleRecord asserts that ev is a call by user through a console
// session: no access key, the browser's address and user agent.
func wantConsoleRecord(t *testing.T, ev map[string]any, user string) {
	t.Helper()
	id, _ := ev["userIdentity"].(map[string]any)
	extra, _ := ev["additionalEventData"].(map[string]any)
	if id["userName"] != user || id["type"] != "IAMUser" || id["accessKeyId"] != nil {
		t.Errorf("%v: userIdentity %v, want %s with no access key", ev["eventName"], id, user)
	}
	if ev["sourceIPAddress"] != "127.0.0.1" || ev["userAgent"] != "console-e2e/1.0" {
		t.Errorf("%v: source %v, user agent %v", ev["eventName"], ev["sourceIPAddress"], ev["userAgent"])
	}
	if extra["sessionType"] != "console" || extra["mfaAuthenticated"] != false {
		t.Errorf("%v: additionalEventData %v", ev["eventName"], extra)
	}
}
