// Package console serves the web console's sign-in: a JSON API under
// /console/api (sign in, sign out, who am I), session cookies, the
// same-origin rule for requests that change state, and the brute-force
// limits. Console pages and the terminal authenticate their requests with
// Server.Authenticate and refuse cross-site ones with RequireSameOrigin.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
)

// Paths of the sign-in API.
const (
	Prefix      = "/console"
	SignInPath  = Prefix + "/api/signin"
	SignOutPath = Prefix + "/api/signout"
	SessionPath = Prefix + "/api/session"
	// CookieName is the session cookie, scoped to Prefix.
	CookieName = "postern_console"
	// DeviceCookieName marks a browser that signed in as a user before
	// (authority.DeviceToken): its failed sign-ins count under it rather
	// than under the user name, which others may have locked.
	DeviceCookieName = "postern_console_device"
)

// Defaults of the session lifetimes.
const (
	DefaultIdleTimeout = time.Hour
	DefaultLifetime    = 12 * time.Hour
)

// Config wires a Server.
type Config struct {
	Authority *authority.Authority
	Trail     *audit.Trail
	Logger    *slog.Logger
	// IdleTimeout ends a session unused for that long; Lifetime ends any
	// session that old.
	IdleTimeout, Lifetime time.Duration
	Limits                Limits           // zero: DefaultLimits
	Now                   func() time.Time // nil: time.Now
}

// Server is the console's sign-in API.
type Server struct {
	cfg   Config
	auth  *authority.Authority
	log   *slog.Logger
	now   func() time.Time
	limit *limiter
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, auth: cfg.Authority, log: cfg.Logger, now: cfg.Now, limit: newLimiter(cfg.Limits, cfg.Authority.Store())}
}

// Handler routes the sign-in API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+SignInPath, s.signIn)
	mux.HandleFunc("POST "+SignOutPath, s.signOut)
	mux.HandleFunc("GET "+SessionPath, s.session)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		if err := s.RequireSameOrigin(r); err != nil {
			writeError(w, err)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Principal is a signed-in console user.
type Principal struct {
	*authority.Principal
	Session *postern.ConsoleSession
}

// errNotSignedIn says nothing about why: no cookie, a forged one, an
// expired or revoked session look the same.
func errNotSignedIn() error {
	return postern.CodedErrorf(postern.KindUnauthenticated, "NotSignedIn", "You are not signed in, or your session has ended. Sign in again.")
}

// Authenticate returns the user whose session cookie r carries, and marks
// the session used. Its Principal has MFA set for sessions that signed in
// with a code, so policies see aws:MultiFactorAuthPresent.
func (s *Server) Authenticate(r *http.Request) (*Principal, error) {
	hash, ok := cookieHash(r)
	if !ok {
		return nil, errNotSignedIn()
	}
	now := s.now()
	cs, err := s.auth.Store().TouchConsoleSession(r.Context(), hash, now, now.Add(-s.cfg.IdleTimeout))
	if err != nil {
		if postern.IsKind(err, postern.KindNotFound) {
			return nil, errNotSignedIn()
		}
		return nil, err
	}
	u, err := s.auth.Store().GetUser(r.Context(), cs.UserName)
	if err != nil {
		if postern.IsKind(err, postern.KindNotFound) {
			return nil, errNotSignedIn()
		}
		return nil, err
	}
	return &Principal{
		Principal: &authority.Principal{User: *u, ARN: s.auth.UserARN(u.Name), MFA: cs.MFA},
		Session:   cs,
	}, nil
}

// cookieHash returns the SHA-256 of the session id in r's cookie.
func cookieHash(r *http.Request) ([]byte, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, false
	}
	// Strict: a cookie differing only in the last character's unused
	// bits must not name the same session.
	id, err := base64.RawURLEncoding.Strict().DecodeString(c.Value)
	if err != nil || len(id) != 32 {
		return nil, false
	}
	h := sha256.Sum256(id)
	return h[:], true
}

// errCrossSite is the answer to a state-changing request from elsewhere.
var errCrossSite = postern.CodedErrorf(postern.KindDenied, "CrossSiteRequestRefused",
	"Cross-site request refused: the console accepts changes only from its own pages.")

// RequireSameOrigin refuses (and audits) a request that changes state
// unless the browser says it comes from the console's own origin:
// Sec-Fetch-Site: same-origin, or an Origin equal to https://<Host>.
// GET, HEAD and OPTIONS pass, except WebSocket upgrades: a terminal is
// as powerful as any change.
func (s *Server) RequireSameOrigin(r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		if !isWebSocketUpgrade(r) {
			return nil
		}
	}
	if SameOrigin(r) {
		return nil
	}
	name := "ConsoleRequest"
	switch r.URL.Path {
	case SignInPath:
		name = "ConsoleLogin"
	case SignOutPath:
		name = "ConsoleSignOut"
	}
	ev := s.event(r, name)
	ev.ErrorCode, ev.ErrorMessage = "CrossSiteRequestRefused", "cross-site request refused"
	ev.AdditionalEventData = map[string]any{
		"origin": truncate(r.Header.Get("Origin"), 256), "secFetchSite": truncate(r.Header.Get("Sec-Fetch-Site"), 64),
		"method": r.Method, "path": truncate(r.URL.Path, 256),
	}
	if p, err := s.Authenticate(r); err == nil {
		ev.UserIdentity = s.identity(&p.User)
	}
	if err := s.record(r.Context(), ev); err != nil {
		return err
	}
	return errCrossSite
}

// SameOrigin reports whether a browser marked r as coming from the
// server's own origin.
func SameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" {
		return sfs == "same-origin"
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && u.Scheme == "https" && u.Path == "" && r.Host != "" && strings.EqualFold(u.Host, r.Host)
}

type signInRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
	OTP      string `json:"otp"`
}

// sessionInfo is what sign-in and GET session answer.
type sessionInfo struct {
	User      string    `json:"user"`
	ARN       string    `json:"arn"`
	MFA       bool      `json:"mfa"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	var req signInRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	now := s.now()
	ip := api.SourceIP(r)
	userKey := "user:" + truncate(req.User, 128)
	keys := []string{userKey, "ip:" + ip.String()}
	if c, err := r.Cookie(DeviceCookieName); err == nil {
		if id, ok := s.auth.CheckDeviceToken(c.Value, req.User, now); ok {
			keys[0] = "device:" + id
		}
	}
	ev := s.event(r, "ConsoleLogin")
	ev.ResponseElements = map[string]any{"ConsoleLogin": "Failure"}
	extra := map[string]any{"LoginTo": "https://" + truncate(r.Host, 256) + Prefix, "MobileVersion": "No", "MFAUsed": "No"}
	ev.AdditionalEventData = extra
	ev.UserIdentity = s.attemptIdentity(r.Context(), req.User)

	refuse := func(wait time.Duration, locked bool) {
		extra["Reason"] = "too many failed attempts"
		if locked {
			extra["Reason"] = "locked after too many failed attempts"
		}
		ev.ErrorMessage = "Failed authentication"
		if err := s.record(r.Context(), ev); err != nil {
			writeError(w, err)
			return
		}
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, postern.CodedErrorf(postern.KindThrottled, "TooManyAttempts",
			"Too many failed sign-in attempts. Try again in %s.", humanSeconds(secs)))
	}
	wait, locked, err := s.limit.wait(r.Context(), now, keys...)
	if err != nil {
		// Without the counts, sign-in cannot be rate-limited: refuse it.
		writeError(w, err)
		return
	}
	if wait > 0 {
		refuse(wait, locked)
		return
	}
	// The attempt counts as a failure before its password is checked:
	// concurrent attempts are counted one after the other, and those
	// past the lock are refused unchecked.
	reserved, err := s.limit.reserve(r.Context(), now, keys...)
	if err != nil {
		writeError(w, err)
		return
	}
	if !reserved {
		// Concurrent attempts reached the lock first.
		if wait, _, err = s.limit.wait(r.Context(), now, keys...); err != nil || wait <= 0 {
			wait = s.cfg.Limits.LockFor
		}
		refuse(wait, true)
		return
	}
	// release takes the attempt back when it proves to be no guess.
	release := func(keys ...string) {
		if err := s.limit.release(context.WithoutCancel(r.Context()), keys...); err != nil {
			s.log.Error("cannot take back a sign-in attempt", "err", err)
		}
	}

	u, serial, err := s.auth.SignIn(r.Context(), req.User, req.Password, req.OTP)
	if se, ok := authority.IsSignInError(err); ok {
		// A missing code follows a right password: it is no guess.
		if se.MFARequired {
			release(keys...)
		}
		extra["Reason"] = se.Reason
		ev.ErrorMessage = "Failed authentication"
		if se.MFARequired {
			extra["MFAUsed"] = "Yes"
		}
		if rerr := s.record(r.Context(), ev); rerr != nil {
			writeError(w, rerr)
			return
		}
		code := "SignInFailed"
		if se.MFARequired {
			code = "MFARequired"
		}
		writeError(w, postern.CodedErrorf(postern.KindUnauthenticated, code, "%s", se.Error()))
		return
	}
	if err != nil {
		release(keys...)
		s.log.Error("sign-in failed", "err", err)
		writeError(w, err)
		return
	}
	for _, k := range slices.Compact([]string{keys[0], userKey}) {
		if err := s.limit.reset(r.Context(), k); err != nil {
			s.log.Warn("cannot reset the failed sign-in count", "err", err)
		}
	}
	release(keys[1:]...)

	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		writeError(w, postern.Internal(err, "no randomness"))
		return
	}
	hash := sha256.Sum256(id)
	cs := &postern.ConsoleSession{
		IDHash: hash[:], UserName: u.Name, MFA: serial != "",
		CreatedAt: now.UTC(), LastSeen: now.UTC(), ExpiresAt: now.Add(s.cfg.Lifetime).UTC(),
		SourceIP: ip.String(), UserAgent: truncate(r.UserAgent(), 512),
	}
	if err := s.auth.Store().CreateConsoleSession(r.Context(), cs); err != nil {
		writeError(w, err)
		return
	}
	ev.ResponseElements = map[string]any{"ConsoleLogin": "Success"}
	if serial != "" {
		extra["MFAUsed"] = "Yes"
		extra["MFAIdentifier"] = serial
	}
	if err := s.record(r.Context(), ev); err != nil {
		// A sign-in never succeeds unaudited.
		_ = s.auth.Store().DeleteConsoleSession(context.WithoutCancel(r.Context()), cs.IDHash)
		writeError(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: base64.RawURLEncoding.EncodeToString(id), Path: Prefix,
		Expires: cs.ExpiresAt, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	if token, err := s.auth.DeviceToken(u.Name, now); err != nil {
		s.log.Warn("cannot make a device token", "err", err)
	} else {
		http.SetCookie(w, &http.Cookie{
			Name: DeviceCookieName, Value: token, Path: SignInPath,
			Expires: now.Add(authority.DeviceTokenLifetime), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
		})
	}
	writeJSON(w, http.StatusOK, sessionInfo{User: u.Name, ARN: s.auth.UserARN(u.Name), MFA: cs.MFA, ExpiresAt: cs.ExpiresAt})
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	p, err := s.Authenticate(r)
	if err == nil {
		if err := s.auth.Store().DeleteConsoleSession(r.Context(), p.Session.IDHash); err != nil {
			writeError(w, err)
			return
		}
		ev := s.event(r, "ConsoleSignOut")
		ev.UserIdentity = s.identity(&p.User)
		ev.ResponseElements = map[string]any{"ConsoleSignOut": "Success"}
		if err := s.record(r.Context(), ev); err != nil {
			writeError(w, err)
			return
		}
	} else if !postern.IsKind(err, postern.KindUnauthenticated) {
		writeError(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusOK, map[string]bool{"signedOut": true})
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	p, err := s.Authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sessionInfo{User: p.User.Name, ARN: p.ARN, MFA: p.MFA, ExpiresAt: p.Session.ExpiresAt})
}

// event starts a CloudTrail sign-in event for r.
func (s *Server) event(r *http.Request, name string) *audit.Event {
	cfg := s.auth.Config()
	return &audit.Event{
		EventTime: s.now().UTC(), EventSource: "signin.amazonaws.com", EventName: name,
		AWSRegion: cfg.Region, SourceIPAddress: api.SourceIP(r).String(), UserAgent: truncate(r.UserAgent(), 512),
		UserIdentity: audit.UserIdentity{Type: "Unknown", AccountID: cfg.Account},
		RequestID:    uuid.NewString(), EventType: "AwsConsoleSignIn", RecipientAccountID: cfg.Account,
	}
}

func (s *Server) identity(u *postern.User) audit.UserIdentity {
	return audit.UserIdentity{Type: "IAMUser", PrincipalID: u.ID, ARN: s.auth.UserARN(u.Name),
		AccountID: s.auth.Config().Account, UserName: u.Name}
}

// attemptIdentity names the user a sign-in is for when it exists, and
// hides what was typed otherwise (it may be a password typed into the
// wrong field), as CloudTrail does.
func (s *Server) attemptIdentity(ctx context.Context, name string) audit.UserIdentity {
	if authority.ValidateName("UserName", name, 64) == nil {
		if u, err := s.auth.Store().GetUser(ctx, name); err == nil {
			return s.identity(u)
		}
	}
	return audit.UserIdentity{Type: "IAMUser", AccountID: s.auth.Config().Account, UserName: audit.Redacted}
}

// record writes ev; the write must not be cut short by a client that
// hung up.
func (s *Server) record(ctx context.Context, ev *audit.Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.cfg.Trail.Record(ctx, ev); err != nil {
		s.log.Error("audit write failed; failing the console request", "event", ev.EventName, "err", err)
		return postern.Internal(err, "audit write failed")
	}
	return nil
}

const maxBody = 16 << 10

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return postern.CodedErrorf(postern.KindInvalid, "UnsupportedMediaType", "Send the request as application/json.")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return postern.CodedErrorf(postern.KindInvalid, "InvalidRequest", "The request body must be a JSON object with user, password and otp.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return postern.CodedErrorf(postern.KindInvalid, "InvalidRequest", "The request body must hold one JSON object.")
	}
	return nil
}

// statuses maps error kinds to HTTP statuses, in the one place that does.
var statuses = map[postern.Kind]int{
	postern.KindInvalid:         http.StatusBadRequest,
	postern.KindUnauthenticated: http.StatusUnauthorized,
	postern.KindDenied:          http.StatusForbidden,
	postern.KindThrottled:       http.StatusTooManyRequests,
	postern.KindUnavailable:     http.StatusServiceUnavailable,
}

// writeError answers {"error": code, "message": text}; unexpected errors
// say nothing about their cause.
func writeError(w http.ResponseWriter, err error) {
	var e *postern.Error
	status, code, msg := http.StatusInternalServerError, "InternalError", "An internal error occurred; the server log has the details."
	if errors.As(err, &e) {
		if st, ok := statuses[e.Kind]; ok {
			status, code, msg = st, e.Code, e.Message
			if code == "" {
				code = e.Kind.String()
			}
		}
	}
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"InternalError"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func humanSeconds(n int) string {
	if n == 1 {
		return "1 second"
	}
	if n < 120 {
		return fmt.Sprintf("%d seconds", n)
	}
	return fmt.Sprintf("%d minutes", (n+59)/60)
}

func isWebSocketUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// WriteError answers err as the console API does: {"error", "message"}
// with the status of its kind.
func WriteError(w http.ResponseWriter, err error) { writeError(w, err) }

// SourceIP is the address a console request came from, as the audit
// records of the console show it.
func SourceIP(r *http.Request) netip.Addr { return api.SourceIP(r) }
