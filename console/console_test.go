package console

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/password"
	"github.com/postern-dev/postern/store/sqlite/sqlitetest"
	"github.com/postern-dev/postern/totp"
)

const host = "console.test"

var passwords = map[string]string{"alice": "correct horse battery one", "bob": "mauve otter kettle seven"}

// clock is a settable time shared by the console and the authority.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	st    postern.Store
	auth  *authority.Authority
	srv   *Server
	h     http.Handler
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureHashing(t, password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
}

// newFixtureHashing is newFixture with passwords hashed with params.
func newFixtureHashing(t *testing.T, params password.Params) *fixture {
	t.Helper()
	st, sealer := sqlitetest.Open(t)
	auth := authority.New(authority.Config{Region: "us-east-1", Account: "123456789012", PasswordParams: params}, st, sealer, nil)
	c := &clock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
	auth.SetClock(c.now)
	_, key, _ := ed25519.GenerateKey(nil)
	srv := New(Config{Authority: auth, Trail: audit.NewTrail(st, key, nil), Now: c.now})
	f := &fixture{t: t, st: st, auth: auth, srv: srv, h: srv.Handler(), clock: c}
	for _, u := range []string{"alice", "bob"} {
		if _, err := auth.CreateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.CreateLoginProfile(t.Context(), u, passwords[u]); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type response struct {
	*httptest.ResponseRecorder
	body map[string]any
}

func (f *fixture) do(method, path, body string, cookie *http.Cookie, hdr map[string]string) response {
	f.t.Helper()
	r := httptest.NewRequest(method, "https://"+host+path, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.10:5555"
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		r.Header.Set("Origin", "https://"+host)
	}
	for k, v := range hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	return f.serve(r)
}

// serve runs r through the console and decodes its JSON answer.
func (f *fixture) serve(r *http.Request) response {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	resp := response{ResponseRecorder: w}
	_ = json.Unmarshal(w.Body.Bytes(), &resp.body)
	return resp
}

func signInBody(user, pw, otp string) string {
	b, _ := json.Marshal(signInRequest{User: user, Password: pw, OTP: otp})
	return string(b)
}

func (f *fixture) signIn(user, pw, otp string) response {
	f.t.Helper()
	return f.do(http.MethodPost, SignInPath, signInBody(user, pw, otp), nil, nil)
}

func (r response) want(t *testing.T, status int, code string) {
	t.Helper()
	if r.Code != status || (code != "" && r.body["error"] != code) {
		t.Fatalf("status %d, body %s; want %d %s", r.Code, r.Body, status, code)
	}
}

func (r response) cookie(t *testing.T) *http.Cookie {
	t.Helper()
	for _, c := range r.Result().Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", CookieName, r.Header()["Set-Cookie"])
	return nil
}

// lastEvent returns the newest audit event named name.
func (f *fixture) lastEvent(name string) map[string]any {
	f.t.Helper()
	recs, err := f.st.LookupAudit(f.t.Context(), postern.AuditQuery{EventName: name, Limit: 1})
	if err != nil || len(recs) == 0 {
		f.t.Fatalf("no %s audit record (%v)", name, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(recs[0].Body, &ev); err != nil {
		f.t.Fatal(err)
	}
	return ev
}

func TestSignInSessionSignOut(t *testing.T) {
	f := newFixture(t)
	r := f.signIn("alice", "correct horse battery one", "")
	r.want(t, http.StatusOK, "")
	if r.body["user"] != "alice" || r.body["arn"] != "arn:aws:iam::123456789012:user/alice" || r.body["mfa"] != false {
		t.Errorf("sign-in answered %s", r.Body)
	}
	c := r.cookie(t)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || len(c.Value) < 43 {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/console and a 256-bit id", c)
	}
	if r.Header().Get("Cache-Control") != "no-store" {
		t.Error("sign-in answer may be cached")
	}
	ev := f.lastEvent("ConsoleLogin")
	if ev["eventSource"] != "signin.amazonaws.com" || ev["eventType"] != "AwsConsoleSignIn" ||
		ev["responseElements"].(map[string]any)["ConsoleLogin"] != "Success" ||
		ev["additionalEventData"].(map[string]any)["MFAUsed"] != "No" ||
		ev["userIdentity"].(map[string]any)["userName"] != "alice" {
		t.Errorf("ConsoleLogin record: %v", ev)
	}

	s := f.do(http.MethodGet, SessionPath, "", c, nil)
	s.want(t, http.StatusOK, "")
	if s.body["user"] != "alice" {
		t.Errorf("GET session = %s", s.Body)
	}
	p, err := f.srv.Authenticate(httptest.NewRequest("GET", SessionPath, nil).WithContext(t.Context()))
	if err == nil || p != nil {
		t.Error("Authenticate without a cookie succeeded")
	}

	f.do(http.MethodPost, SignOutPath, "", c, nil).want(t, http.StatusOK, "")
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
	if ev := f.lastEvent("ConsoleSignOut"); ev["userIdentity"].(map[string]any)["userName"] != "alice" {
		t.Errorf("ConsoleSignOut record: %v", ev)
	}
}

func TestForgedCookies(t *testing.T) {
	f := newFixture(t)
	f.signIn("alice", "correct horse battery one", "").want(t, http.StatusOK, "")
	for _, v := range []string{"", "x", strings.Repeat("A", 43), "not base64!!", strings.Repeat("A", 400)} {
		f.do(http.MethodGet, SessionPath, "", &http.Cookie{Name: CookieName, Value: v}, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
	}
}

func TestWrongPasswordHidesWhetherTheUserExists(t *testing.T) {
	f := newFixture(t)
	a := f.signIn("alice", "wrong password here", "")
	a.want(t, http.StatusUnauthorized, "SignInFailed")
	n := f.signIn("nobody", "wrong password here", "")
	n.want(t, http.StatusUnauthorized, "SignInFailed")
	if a.body["message"] != n.body["message"] {
		t.Errorf("messages differ: %q vs %q", a.body["message"], n.body["message"])
	}
	ev := f.lastEvent("ConsoleLogin")
	if ev["errorMessage"] != "Failed authentication" || ev["userIdentity"].(map[string]any)["userName"] != audit.Redacted ||
		ev["responseElements"].(map[string]any)["ConsoleLogin"] != "Failure" {
		t.Errorf("failure record for an unknown user: %v", ev)
	}
	if strings.Contains(string(mustJSON(ev)), "wrong password here") {
		t.Error("the audit record holds the attempted password")
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func TestLockout(t *testing.T) {
	f := newFixture(t)
	for _, user := range []string{"alice", "nobody"} {
		var msgs []string
		// Two free failures, then delays that double.
		for range 2 {
			f.signIn(user, "wrong password here", "").want(t, http.StatusUnauthorized, "SignInFailed")
		}
		f.signIn(user, "wrong password here", "").want(t, http.StatusUnauthorized, "SignInFailed")
		r := f.signIn(user, "wrong password here", "")
		r.want(t, http.StatusTooManyRequests, "TooManyAttempts")
		if r.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: Retry-After %q after 3 failures, want 1", user, r.Header().Get("Retry-After"))
		}
		f.clock.add(time.Second)
		f.signIn(user, "wrong password here", "").want(t, http.StatusUnauthorized, "SignInFailed")
		r = f.signIn(user, "wrong password here", "")
		r.want(t, http.StatusTooManyRequests, "TooManyAttempts")
		if r.Header().Get("Retry-After") != "2" {
			t.Errorf("%s: Retry-After %q after 4 failures, want 2", user, r.Header().Get("Retry-After"))
		}
		f.clock.add(2 * time.Second)
		f.signIn(user, "wrong password here", "").want(t, http.StatusUnauthorized, "SignInFailed")
		// Five failures: locked, even with the right password.
		r = f.signIn(user, "correct horse battery one", "")
		r.want(t, http.StatusTooManyRequests, "TooManyAttempts")
		if ra := r.Header().Get("Retry-After"); ra != "900" {
			t.Errorf("%s: Retry-After %q when locked, want 900", user, ra)
		}
		msgs = append(msgs, r.body["message"].(string))
		f.clock.add(14 * time.Minute)
		f.signIn(user, "correct horse battery one", "").want(t, http.StatusTooManyRequests, "TooManyAttempts")
		f.clock.add(time.Minute)
		if user == "alice" {
			f.signIn(user, "correct horse battery one", "").want(t, http.StatusOK, "")
		}
		if !strings.Contains(msgs[0], "15 minutes") {
			t.Errorf("lock message %q does not say when to retry", msgs[0])
		}
	}
	// Another user is not locked by alice's failures.
	f.signIn("bob", "mauve otter kettle seven", "").want(t, http.StatusOK, "")
	if ev := f.lastEvent("ConsoleLogin"); ev["userIdentity"].(map[string]any)["userName"] != "bob" {
		t.Errorf("last ConsoleLogin record: %v", ev)
	}
}

// Attempts made at once are counted before their passwords are checked:
// however many arrive together, no more than the lock allows are checked,
// and the rest are refused unchecked.
func TestLockoutHoldsForConcurrentAttempts(t *testing.T) {
	// Hashing slow enough that, were failures counted only after the
	// check, every attempt would pass the lock before any was counted.
	f := newFixtureHashing(t, password.Params{Memory: 8 << 10, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32})
	const attempts = 40
	codes := make(chan int, attempts)
	var wg sync.WaitGroup
	for range attempts {
		wg.Go(func() {
			codes <- f.do(http.MethodPost, SignInPath, signInBody("alice", "a wrong guess", ""), nil, nil).Code
		})
	}
	wg.Wait()
	close(codes)
	checked := 0
	for c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("an attempt answered %d", c)
		}
	}
	if checked < 1 || checked > DefaultLimits.LockAfter {
		t.Errorf("%d of %d concurrent guesses were checked; the lock allows %d", checked, attempts, DefaultLimits.LockAfter)
	}
	f.signIn("alice", passwords["alice"], "").want(t, http.StatusTooManyRequests, "TooManyAttempts")
	recs, err := f.st.LookupAudit(t.Context(), postern.AuditQuery{EventName: "ConsoleLogin", Limit: 100})
	if err != nil || len(recs) != attempts+1 {
		t.Errorf("%d ConsoleLogin records for %d attempts (%v)", len(recs), attempts+1, err)
	}
}

// An attempt counts against its address only when it fails: successful
// sign-ins from one address, however many, never lock it.
func TestSuccessesDoNotCountAgainstTheAddress(t *testing.T) {
	f := newFixture(t)
	for range DefaultLimits.LockAfter*DefaultLimits.IPFactor + 5 {
		f.signIn("bob", passwords["bob"], "").want(t, http.StatusOK, "")
	}
	counts, err := f.st.SignInFailures(t.Context(), []string{"ip:192.0.2.10", "user:bob"}, time.Time{})
	if err != nil || len(counts) != 0 {
		t.Errorf("failures counted after successes: %v %v", counts, err)
	}
}

// signInFrom signs in from ip with the given cookies.
func (f *fixture) signInFrom(ip, user, pw string, cookies ...*http.Cookie) response {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodPost, "https://"+host+SignInPath, strings.NewReader(signInBody(user, pw, "")))
	r.RemoteAddr = ip + ":4444"
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Origin", "https://"+host)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return f.serve(r)
}

// deviceCookie is the device cookie a successful sign-in set.
func deviceCookie(t *testing.T, r response) *http.Cookie {
	t.Helper()
	for _, c := range r.Result().Cookies() {
		if c.Name == DeviceCookieName {
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != SignInPath {
				t.Errorf("device cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path %s", c, SignInPath)
			}
			return c
		}
	}
	t.Fatalf("the sign-in set no device cookie")
	return nil
}

// Someone who locks a user name by guessing at it does not lock the user
// out of a browser they signed in from before; every other browser stays
// locked out, and the device cookie counts for its own user only.
func TestLockoutSparesKnownDevices(t *testing.T) {
	f := newFixture(t)
	aliceDevice := deviceCookie(t, f.signInFrom("203.0.113.5", "alice", passwords["alice"]))
	bobDevice := deviceCookie(t, f.signInFrom("203.0.113.6", "bob", passwords["bob"]))
	forged := &http.Cookie{Name: DeviceCookieName, Value: base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", 60)))}
	for round := range 3 {
		// Five guesses from the attacker's address, spaced past the
		// delays, lock the name.
		for range DefaultLimits.LockAfter {
			f.signInFrom("198.51.100.66", "alice", "not her password")
			f.clock.add(time.Minute)
		}
		f.signInFrom("198.51.100.67", "alice", passwords["alice"]).want(t, http.StatusTooManyRequests, "TooManyAttempts")
		f.signInFrom("198.51.100.67", "alice", passwords["alice"], bobDevice).want(t, http.StatusTooManyRequests, "TooManyAttempts")
		f.signInFrom("198.51.100.67", "alice", passwords["alice"], forged).want(t, http.StatusTooManyRequests, "TooManyAttempts")
		r := f.signInFrom("203.0.113.5", "alice", passwords["alice"], aliceDevice)
		r.want(t, http.StatusOK, "")
		aliceDevice = deviceCookie(t, r)
		f.clock.add(time.Duration(round+1) * time.Minute)
	}
	// The device's own failures lock the device.
	for range DefaultLimits.LockAfter {
		f.signInFrom("203.0.113.5", "alice", "a slip of the finger", aliceDevice)
		f.clock.add(time.Minute)
	}
	f.signInFrom("203.0.113.5", "alice", passwords["alice"], aliceDevice).want(t, http.StatusTooManyRequests, "TooManyAttempts")
}

func TestLockoutPerAddress(t *testing.T) {
	f := newFixture(t)
	lim := DefaultLimits
	// Spread failures over many user names from one address.
	n := 0
	for n < lim.LockAfter*lim.IPFactor {
		r := f.signIn("user"+string(rune('a'+n%26))+strings.Repeat("x", n/26), "wrong password here", "")
		if r.Code == http.StatusTooManyRequests {
			f.clock.add(time.Minute)
			continue
		}
		r.want(t, http.StatusUnauthorized, "SignInFailed")
		n++
	}
	f.signIn("bob", "mauve otter kettle seven", "").want(t, http.StatusTooManyRequests, "TooManyAttempts")
}

func TestSessionExpiry(t *testing.T) {
	f := newFixture(t)
	c := f.signIn("alice", "correct horse battery one", "").cookie(t)
	// Activity keeps a session alive past the idle timeout …
	for range 3 {
		f.clock.add(50 * time.Minute)
		f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusOK, "")
	}
	// … but not idleness.
	f.clock.add(61 * time.Minute)
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusUnauthorized, "NotSignedIn")

	// And not past the absolute lifetime, however active.
	c = f.signIn("alice", "correct horse battery one", "").cookie(t)
	for range 13 {
		f.clock.add(55 * time.Minute)
		f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusOK, "")
	}
	f.clock.add(55 * time.Minute) // 12 h 50 min after sign-in
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
}

func TestRevokedOnPasswordChangeAndDelete(t *testing.T) {
	f := newFixture(t)
	c := f.signIn("alice", "correct horse battery one", "").cookie(t)
	cb := f.signIn("bob", "mauve otter kettle seven", "").cookie(t)
	if err := f.auth.UpdateLoginProfile(t.Context(), "alice", "another fine passphrase"); err != nil {
		t.Fatal(err)
	}
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
	f.do(http.MethodGet, SessionPath, "", cb, nil).want(t, http.StatusOK, "")
	f.signIn("alice", "correct horse battery one", "").want(t, http.StatusUnauthorized, "SignInFailed")
	f.signIn("alice", "another fine passphrase", "").want(t, http.StatusOK, "")

	if err := f.st.DeleteLoginProfile(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	}
	f.do(http.MethodGet, SessionPath, "", cb, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
}

func TestCrossSiteRefused(t *testing.T) {
	f := newFixture(t)
	body := signInBody("alice", "correct horse battery one", "")
	for name, hdr := range map[string]map[string]string{
		"no Origin":            {"Origin": ""},
		"other origin":         {"Origin": "https://evil.test"},
		"http origin":          {"Origin": "http://" + host},
		"null origin":          {"Origin": "null"},
		"cross-site fetch":     {"Sec-Fetch-Site": "cross-site", "Origin": "https://" + host},
		"same-site (sibling)":  {"Sec-Fetch-Site": "same-site"},
		"origin with a suffix": {"Origin": "https://" + host + ".evil.test"},
	} {
		r := f.do(http.MethodPost, SignInPath, body, nil, hdr)
		if r.Code != http.StatusForbidden || r.body["error"] != "CrossSiteRequestRefused" {
			t.Errorf("%s: %d %s; want 403 CrossSiteRequestRefused", name, r.Code, r.Body)
		}
	}
	ev := f.lastEvent("ConsoleLogin")
	if ev["errorCode"] != "CrossSiteRequestRefused" {
		t.Errorf("refusal record: %v", ev)
	}
	// Sec-Fetch-Site: same-origin alone is enough.
	f.do(http.MethodPost, SignInPath, body, nil, map[string]string{"Origin": "", "Sec-Fetch-Site": "same-origin"}).want(t, http.StatusOK, "")
	// A cross-site sign-out leaves the session alone.
	c := f.signIn("alice", "correct horse battery one", "").cookie(t)
	f.do(http.MethodPost, SignOutPath, "", c, map[string]string{"Origin": "https://evil.test"}).want(t, http.StatusForbidden, "CrossSiteRequestRefused")
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusOK, "")
	if ev := f.lastEvent("ConsoleSignOut"); ev["userIdentity"].(map[string]any)["userName"] != "alice" || ev["errorCode"] != "CrossSiteRequestRefused" {
		t.Errorf("refused sign-out record: %v", ev)
	}
}

func TestMFA(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	c := f.signIn("alice", "correct horse battery one", "").cookie(t)
	d, seedText, err := f.auth.CreateVirtualMFADevice(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := totp.DecodeSecret(seedText)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.auth.EnableMFADevice(ctx, "alice", d.SerialNumber, "000000", ""); err == nil && totp.At(seed, f.clock.now()) != "000000" {
		t.Fatal("EnableMFADevice accepted a wrong code")
	}
	if err := f.auth.EnableMFADevice(ctx, "alice", d.SerialNumber, totp.At(seed, f.clock.now()), ""); err != nil {
		t.Fatal(err)
	}
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusUnauthorized, "NotSignedIn")

	// The code that enabled the device is spent.
	f.signIn("alice", "correct horse battery one", "").want(t, http.StatusUnauthorized, "MFARequired")
	f.signIn("alice", "correct horse battery one", totp.At(seed, f.clock.now())).want(t, http.StatusUnauthorized, "SignInFailed")
	f.clock.add(totp.Period)
	code := totp.At(seed, f.clock.now())
	r := f.signIn("alice", "correct horse battery one", code)
	r.want(t, http.StatusOK, "")
	if r.body["mfa"] != true {
		t.Errorf("MFA sign-in answered %s", r.Body)
	}
	ev := f.lastEvent("ConsoleLogin")
	if extra := ev["additionalEventData"].(map[string]any); extra["MFAUsed"] != "Yes" || extra["MFAIdentifier"] != d.SerialNumber {
		t.Errorf("MFA sign-in record: %v", ev)
	}
	// Each code once.
	f.clock.add(time.Second)
	f.signIn("alice", "correct horse battery one", code).want(t, http.StatusUnauthorized, "SignInFailed")

	// Policies see aws:MultiFactorAuthPresent for the MFA session only.
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:DescribeInstances","Resource":"*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"}}}]}`
	if err := f.auth.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: "alice", Name: "mfa", Document: doc}); err != nil {
		t.Fatal(err)
	}
	if err := f.auth.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: "bob", Name: "mfa", Document: doc}); err != nil {
		t.Fatal(err)
	}
	f.auth.InvalidateIdentities()
	acc := authority.Access{Action: "ec2:DescribeInstances", Resource: "*"}
	pa, err := f.srv.Authenticate(withCookie(r.cookie(t)))
	if err != nil || !pa.MFA {
		t.Fatalf("Authenticate MFA session = %+v, %v", pa, err)
	}
	if _, err := f.auth.Authorize(ctx, pa.Principal, acc, authority.Env{}); err != nil {
		t.Errorf("MFA session denied: %v", err)
	}
	pb, err := f.srv.Authenticate(withCookie(f.signIn("bob", "mauve otter kettle seven", "").cookie(t)))
	if err != nil || pb.MFA {
		t.Fatalf("Authenticate password-only session = %+v, %v", pb, err)
	}
	if _, err := f.auth.Authorize(ctx, pb.Principal, acc, authority.Env{}); !postern.IsKind(err, postern.KindDenied) {
		t.Errorf("password-only session: Authorize = %v, want a denial", err)
	}

	// Deactivating MFA ends the MFA session.
	c = r.cookie(t)
	if err := f.auth.DeactivateMFADevice(ctx, "alice", d.SerialNumber); err != nil {
		t.Fatal(err)
	}
	f.do(http.MethodGet, SessionPath, "", c, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
	f.signIn("alice", "correct horse battery one", "").want(t, http.StatusOK, "")
}

func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://"+host+SessionPath, nil)
	r.AddCookie(c)
	return r
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	f.do(http.MethodPost, SignInPath, `{"user":"alice"`, nil, nil).want(t, http.StatusBadRequest, "InvalidRequest")
	f.do(http.MethodPost, SignInPath, `{"user":"alice","pass":"x"}`, nil, nil).want(t, http.StatusBadRequest, "InvalidRequest")
	f.do(http.MethodPost, SignInPath, signInBody("alice", "x", ""), nil, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}).
		want(t, http.StatusBadRequest, "UnsupportedMediaType")
	f.do(http.MethodPost, SignInPath, `{"user":"`+strings.Repeat("a", 20000)+`"}`, nil, nil).want(t, http.StatusBadRequest, "InvalidRequest")
}

// TestCookieMustBeCanonical: a session cookie that differs only in the
// unused bits of its last base64 character is not the same cookie.
func TestCookieMustBeCanonical(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	id := make([]byte, 32)
	for i := range id {
		id[i] = byte(i * 7)
	}
	canonical := base64.RawURLEncoding.EncodeToString(id)
	last := strings.IndexByte(alphabet, canonical[len(canonical)-1])
	variant := canonical[:len(canonical)-1] + string(alphabet[last+1]) // same 4 data bits, a stray unused bit
	for v, want := range map[string]bool{canonical: true, variant: false} {
		r := httptest.NewRequest(http.MethodGet, SessionPath, nil)
		r.AddCookie(&http.Cookie{Name: CookieName, Value: v})
		if _, ok := cookieHash(r); ok != want {
			t.Errorf("cookie %q accepted = %v, want %v", v, ok, want)
		}
	}
}
