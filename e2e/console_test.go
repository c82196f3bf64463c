package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern/totp"
)

// consoleAnswer is one answer of the console's sign-in API.
type consoleAnswer struct {
	status int
	header http.Header
	body   map[string]any
	cookie *http.Cookie
	raw    string
}

// console sends a console API request to s from the server's own origin
// (unless hdr overrides Origin) with the session cookie, if any.
func (s *server) console(t *testing.T, method, path string, body any, cookie *http.Cookie, hdr map[string]string) consoleAnswer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", s.URL)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := consoleAnswer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &a.body)
	for _, c := range resp.Cookies() {
		if c.Name == "postern_console" {
			a.cookie = c
		}
	}
	if msg, _ := a.body["message"].(string); msg != "" {
		noteError(msg)
	}
	return a
}

func (a consoleAnswer) want(t *testing.T, what string, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.body["error"] != code) {
		t.Fatalf("%s: %d %s; want %d %s", what, a.status, a.raw, status, code)
	}
}

func (s *server) signIn(t *testing.T, user, pw, otp string) consoleAnswer {
	t.Helper()
	return s.console(t, http.MethodPost, "/console/api/signin", map[string]string{"user": user, "password": pw, "otp": otp}, nil, nil)
}

func (s *server) setPassword(t *testing.T, user, pw string) {
	t.Helper()
	noteSecret(pw, "console password of "+user)
	if out, errOut, code := posternIn(t, s.Env, pw+"\n", "user", "set-password", "--password-stdin", user); code != 0 {
		t.Fatalf("postern user set-password %s: exit %d: %s%s", user, code, out, errOut)
	}
}

// auditEvents returns the exported trail's events named name.
func (s *server) auditEvents(t *testing.T, name string) []map[string]any {
	t.Helper()
	out, errOut, code := s.postern(t, "audit", "export")
	if code != 0 {
		t.Fatalf("postern audit export: exit %d: %s", code, errOut)
	}
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err == nil && ev["eventName"] == name {
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestConsoleSignIn drives the console's sign-in API over HTTPS against
// a real server: passwords set with the CLI, cookies, revocation, the
// same-origin rule, MFA, lockout, the audit trail and the log.
func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--log-level", "debug")
	for _, u := range []string{"alice", "bob", "carol"} {
		if _, errOut, code := s.postern(t, "user", "create", u); code != 0 {
			t.Fatalf("postern user create %s: exit %d: %s", u, code, errOut)
		}
	}

	// Weak passwords are refused with a reason; none is ever a flag.
	_, errOut, code := posternIn(t, s.Env, "short\n", "user", "set-password", "--password-stdin", "alice")
	if code == 0 || !strings.Contains(errOut, "at least 12 characters") {
		t.Errorf("a short password: exit %d, %q; want a refusal naming the minimum", code, errOut)
	}
	_, errOut, code = posternIn(t, s.Env, "password1234\n", "user", "set-password", "--password-stdin", "alice")
	if code == 0 || !strings.Contains(errOut, "too common") {
		t.Errorf("a common password: exit %d, %q; want a refusal", code, errOut)
	}
	_, errOut, code = posternIn(t, s.Env, "", "user", "set-password", "alice")
	if code != 2 || !strings.Contains(errOut, "--password-stdin") {
		t.Errorf("set-password without a terminal: exit %d, %q; want a usage error naming --password-stdin", code, errOut)
	}
	const alicePW, alicePW2, bobPW = "violet kettle ocean 42", "amber lantern river 77", "granite meadow fox 913"
	s.setPassword(t, "alice", alicePW)
	s.setPassword(t, "bob", bobPW)

	// Sign in: a strict, secure, HTTP-only cookie for /console.
	r := s.signIn(t, "alice", alicePW, "")
	r.want(t, "sign in", http.StatusOK, "")
	if r.body["user"] != "alice" || r.body["mfa"] != false || !strings.HasSuffix(r.body["arn"].(string), ":user/alice") {
		t.Errorf("sign-in answer %s", r.raw)
	}
	if r.cookie == nil {
		t.Fatalf("no session cookie: %v", r.header["Set-Cookie"])
	}
	noteSecret(r.cookie.Value, "alice's session cookie")
	setCookie := strings.Join(r.header["Set-Cookie"], "\n")
	for _, attr := range []string{"Path=/console", "HttpOnly", "Secure", "SameSite=Strict", "Expires="} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("Set-Cookie %q lacks %s", setCookie, attr)
		}
	}
	aliceCookie := r.cookie
	who := s.console(t, http.MethodGet, "/console/api/session", nil, aliceCookie, nil)
	who.want(t, "who am I", http.StatusOK, "")
	if who.body["user"] != "alice" {
		t.Errorf("GET session = %s", who.raw)
	}

	// Forged cookies.
	for _, v := range []string{"forged", strings.Repeat("A", 43), aliceCookie.Value[:42] + "x"} {
		s.console(t, http.MethodGet, "/console/api/session", nil, &http.Cookie{Name: "postern_console", Value: v}, nil).
			want(t, "a forged cookie", http.StatusUnauthorized, "NotSignedIn")
	}

	// Wrong password: the same answer as an unknown user.
	wrong := s.signIn(t, "bob", "not bob's password", "")
	wrong.want(t, "wrong password", http.StatusUnauthorized, "SignInFailed")
	unknown := s.signIn(t, "nobody", "not bob's password", "")
	unknown.want(t, "unknown user", http.StatusUnauthorized, "SignInFailed")
	if wrong.body["message"] != unknown.body["message"] {
		t.Errorf("a wrong password (%q) and an unknown user (%q) answer differently", wrong.body["message"], unknown.body["message"])
	}

	// Cross-site requests are refused and audited; the session survives.
	s.console(t, http.MethodPost, "/console/api/signout", nil, aliceCookie, map[string]string{"Origin": "https://evil.example"}).
		want(t, "a cross-site sign-out", http.StatusForbidden, "CrossSiteRequestRefused")
	s.console(t, http.MethodPost, "/console/api/signin", map[string]string{"user": "bob", "password": bobPW}, nil,
		map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}).
		want(t, "a cross-site sign-in", http.StatusForbidden, "CrossSiteRequestRefused")
	s.console(t, http.MethodGet, "/console/api/session", nil, aliceCookie, nil).want(t, "session after a cross-site sign-out", http.StatusOK, "")

	// Sign-out revokes.
	s.console(t, http.MethodPost, "/console/api/signout", nil, aliceCookie, nil).want(t, "sign out", http.StatusOK, "")
	s.console(t, http.MethodGet, "/console/api/session", nil, aliceCookie, nil).want(t, "session after sign-out", http.StatusUnauthorized, "NotSignedIn")

	// A password change revokes.
	r = s.signIn(t, "alice", alicePW, "")
	r.want(t, "sign in again", http.StatusOK, "")
	noteSecret(r.cookie.Value, "alice's second session cookie")
	s.setPassword(t, "alice", alicePW2)
	s.console(t, http.MethodGet, "/console/api/session", nil, r.cookie, nil).want(t, "session after a password change", http.StatusUnauthorized, "NotSignedIn")
	s.signIn(t, "alice", alicePW, "").want(t, "the old password", http.StatusUnauthorized, "SignInFailed")

	// MFA: the URI once, then a code confirms; sign-in then needs a code,
	// each code works once.
	out, errOut, code := posternIn(t, s.Env, "", "user", "enable-mfa", "alice")
	if code == 0 || !strings.Contains(errOut, "enable-mfa --code") {
		t.Fatalf("enable-mfa with no code: exit %d, %q; want it to say how to finish", code, errOut)
	}
	m := regexp.MustCompile(`otpauth://totp/Postern:alice\?secret=([A-Z2-7]+)&issuer=Postern`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("enable-mfa printed no otpauth URI:\n%s", out)
	}
	noteSecret(m[1], "alice's TOTP seed")
	seed, err := totp.DecodeSecret(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := s.postern(t, "user", "enable-mfa", "--code", "000000", "alice"); code == 0 && totp.At(seed, time.Now()) != "000000" {
		t.Error("enable-mfa accepted a wrong code")
	} else if code != 0 && !strings.Contains(errOut, "InvalidAuthenticationCode") {
		t.Errorf("enable-mfa with a wrong code: %q", errOut)
	}
	step := totp.Step(time.Now())
	if out, errOut, code := s.postern(t, "user", "enable-mfa", "--code", totp.Code(seed, step), "alice"); code != 0 {
		t.Fatalf("enable-mfa --code: exit %d: %s%s", code, out, errOut)
	}
	s.signIn(t, "alice", alicePW2, "").want(t, "sign in without a code", http.StatusUnauthorized, "MFARequired")
	s.signIn(t, "alice", alicePW2, totp.Code(seed, step)).want(t, "the code that enabled MFA", http.StatusUnauthorized, "SignInFailed")
	next := totp.Code(seed, step+1) // within the one-step window
	r = s.signIn(t, "alice", alicePW2, next)
	r.want(t, "sign in with a code", http.StatusOK, "")
	noteSecret(r.cookie.Value, "alice's MFA session cookie")
	if r.body["mfa"] != true {
		t.Errorf("MFA sign-in answer %s", r.raw)
	}
	mfaWho := s.console(t, http.MethodGet, "/console/api/session", nil, r.cookie, nil)
	if mfaWho.body["mfa"] != true {
		t.Errorf("GET session of an MFA session = %s", mfaWho.raw)
	}
	if _, errOut, code := s.postern(t, "user", "disable-mfa", "alice"); code != 0 {
		t.Fatalf("disable-mfa: exit %d: %s", code, errOut)
	}
	s.console(t, http.MethodGet, "/console/api/session", nil, r.cookie, nil).want(t, "session after disable-mfa", http.StatusUnauthorized, "NotSignedIn")

	// Lockout: carol has no password, so nothing tells her apart from a
	// user with one. Three failures, then waits that double, then a lock.
	failUntilLocked(t, []*server{s}, "carol")
	locked := s.signIn(t, "carol", "guess number 99", "")
	locked.want(t, "a locked user", http.StatusTooManyRequests, "TooManyAttempts")
	if ra, _ := strconv.Atoi(locked.header.Get("Retry-After")); ra < 800 {
		t.Errorf("locked: Retry-After %q, want about 15 minutes", locked.header.Get("Retry-After"))
	}
	if !strings.Contains(locked.body["message"].(string), "minutes") || strings.Contains(locked.body["message"].(string), "carol") {
		t.Errorf("lock message %q", locked.body["message"])
	}

	// The trail: ConsoleLogin successes and failures as CloudTrail writes
	// them, and the refusals.
	evs := s.auditEvents(t, "ConsoleLogin")
	var success, failure, mfa, crossSite, lockedEv bool
	for _, ev := range evs {
		resp, _ := ev["responseElements"].(map[string]any)
		extra, _ := ev["additionalEventData"].(map[string]any)
		if ev["eventSource"] != "signin.amazonaws.com" || ev["eventType"] != "AwsConsoleSignIn" {
			t.Errorf("ConsoleLogin record with source %v, type %v", ev["eventSource"], ev["eventType"])
		}
		switch {
		case ev["errorCode"] == "CrossSiteRequestRefused":
			crossSite = true
		case resp["ConsoleLogin"] == "Success" && extra["MFAUsed"] == "Yes":
			mfa = strings.HasSuffix(extra["MFAIdentifier"].(string), ":mfa/alice")
		case resp["ConsoleLogin"] == "Success":
			success = true
		case resp["ConsoleLogin"] == "Failure" && extra["Reason"] == "locked after too many failed attempts":
			lockedEv = true
		case resp["ConsoleLogin"] == "Failure" && ev["errorMessage"] == "Failed authentication":
			failure = true
		}
	}
	if !success || !failure || !mfa || !crossSite || !lockedEv {
		t.Errorf("ConsoleLogin records: success %v, failure %v, MFA %v, cross-site %v, locked %v; want all", success, failure, mfa, crossSite, lockedEv)
	}
	if evs := s.auditEvents(t, "ConsoleSignOut"); len(evs) < 2 {
		t.Errorf("%d ConsoleSignOut records, want the sign-out and the refused one", len(evs))
	}
	for _, name := range []string{"CreateLoginProfile", "UpdateLoginProfile", "CreateVirtualMFADevice", "EnableMFADevice", "DeactivateMFADevice"} {
		if len(s.auditEvents(t, name)) == 0 {
			t.Errorf("no %s record", name)
		}
	}
	assertNoLeaks(t, s)
}

// TestConsoleSessionLifetime: a session ends at its absolute lifetime,
// however active.
func TestConsoleSessionLifetime(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--console-lifetime", "3s")
	if _, errOut, code := s.postern(t, "user", "create", "dora"); code != 0 {
		t.Fatalf("postern user create: exit %d: %s", code, errOut)
	}
	s.setPassword(t, "dora", "saffron harbour wind 5")
	r := s.signIn(t, "dora", "saffron harbour wind 5", "")
	r.want(t, "sign in", http.StatusOK, "")
	s.console(t, http.MethodGet, "/console/api/session", nil, r.cookie, nil).want(t, "a fresh session", http.StatusOK, "")
	waitFor(t, "the session to expire", 10*time.Second, func() bool {
		return s.console(t, http.MethodGet, "/console/api/session", nil, r.cookie, nil).status == http.StatusUnauthorized
	})
}

// failUntilLocked makes five failed sign-ins as user, taking turns among
// servers (replicas of one database), waiting out the growing delays
// between them, so that the user is locked afterwards.
func failUntilLocked(t *testing.T, servers []*server, user string) {
	t.Helper()
	fails := 0
	next := func() consoleAnswer {
		return servers[fails%len(servers)].signIn(t, user, "guess number "+strconv.Itoa(fails), "")
	}
	for fails < 5 {
		last := next()
		switch last.status {
		case http.StatusUnauthorized:
			fails++
		case http.StatusTooManyRequests:
			ra, _ := strconv.Atoi(last.header.Get("Retry-After"))
			if ra < 1 || ra > 2 {
				t.Fatalf("after %d failures: Retry-After %q, want 1 or 2 seconds", fails, last.header.Get("Retry-After"))
			}
			waitFor(t, "the sign-in delay to pass", 5*time.Second, func() bool {
				last = next()
				if last.status == http.StatusUnauthorized {
					fails++
				}
				return last.status != http.StatusTooManyRequests
			})
		default:
			last.want(t, "a guess", http.StatusUnauthorized, "SignInFailed")
		}
	}
}
