// Package sigv4 verifies AWS Signature Version 4 on incoming HTTP requests,
// in both the header form (Authorization: AWS4-HMAC-SHA256 …) and the
// presigned query form (X-Amz-Algorithm, X-Amz-Credential, …), so that the
// stock AWS SDKs and CLIs can call Postern unmodified.
//
// Verification recomputes the canonical request the client signed. Every
// service is treated as a non-S3 service: the canonical URI is the path as
// sent, normalised and URI-encoded once more ("double-encoded").
//
// The verifier checks the signature, the clock and the presigned expiry. It
// reports the credential scope (region and service) but does not judge it:
// callers must check that Result.Service and Result.Region are theirs.
package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
)

// AWS error codes for signing problems, as the AWS JSON protocols spell them.
const (
	CodeMissingToken = "MissingAuthenticationTokenException"
	CodeIncomplete   = "IncompleteSignatureException"
	CodeInvalid      = "InvalidSignatureException"
)

// DefaultMaxSkew is how far a request's X-Amz-Date may be from the server's
// clock, as on AWS.
const DefaultMaxSkew = 5 * time.Minute

// maxPresignExpires is the longest X-Amz-Expires AWS accepts: seven days.
const maxPresignExpires = 604800

const (
	algorithm              = "AWS4-HMAC-SHA256"
	terminator             = "aws4_request"
	amzDateLayout          = "20060102T150405Z"
	unsignedPayloadLiteral = "UNSIGNED-PAYLOAD"
)

// SecretLookup returns the secret for an access key id. It returns a
// *postern.Error of kind postern.KindUnknownKey when the key is unknown or
// inactive.
type SecretLookup func(ctx context.Context, accessKeyID string) (secret string, err error)

// Verifier checks SigV4 signatures. Create one with NewVerifier and share it:
// it is safe for concurrent use, and it caches derived signing keys.
type Verifier struct {
	// Lookup finds the secret for an access key id.
	Lookup SecretLookup
	// Now is the clock; tests replace it. Nil means time.Now.
	Now func() time.Time
	// MaxSkew bounds |X-Amz-Date - Now| for header-signed requests and how
	// far in the future a presigned URL may be dated. Zero means
	// DefaultMaxSkew.
	MaxSkew time.Duration
	// AllowUnsignedPayload accepts "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD"
	// on requests with a body. Off by default: for Postern's APIs the body is
	// the call, and a signature that does not cover it could be replayed
	// with another body.
	AllowUnsignedPayload bool

	cache keyCache
}

// NewVerifier returns a Verifier that finds secrets with lookup.
func NewVerifier(lookup SecretLookup) *Verifier {
	return &Verifier{Lookup: lookup, Now: time.Now, MaxSkew: DefaultMaxSkew}
}

// Result describes a request whose signature verified.
type Result struct {
	AccessKeyID string
	Region      string // from the credential scope; the caller checks it
	Service     string // from the credential scope; the caller checks it
	SignedAt    time.Time
	// SessionToken is X-Amz-Security-Token, if sent. It is covered by the
	// signature but not validated here.
	SessionToken string
	Presigned    bool
	Expires      time.Time // presigned only: SignedAt + X-Amz-Expires
	// UnsignedPayload reports that the client sent UNSIGNED-PAYLOAD, so the
	// signature does not cover the body.
	UnsignedPayload bool
	// Signature is the signature as bytes: one request's identity, however
	// its hexadecimal digits were written.
	Signature []byte
}

// signed is what a request claims: the parts of its signature, parsed but
// not yet checked against a secret.
type signed struct {
	presigned     bool
	accessKeyID   string
	scopeDate     string // yyyymmdd
	region        string
	service       string
	amzDate       string // as sent, yyyymmddThhmmssZ
	signedAt      time.Time
	expires       int64 // presigned only, seconds
	signedHeaders []string
	signedList    string // SignedHeaders exactly as sent
	signature     []byte // decoded
	sessionToken  string
}

func (s *signed) scope() string {
	return s.scopeDate + "/" + s.region + "/" + s.service + "/" + terminator
}

// Verify checks the SigV4 signature of r. body is the request body the
// caller already read (nil for GET and presigned URLs); it is hashed unless
// the client sent X-Amz-Content-Sha256, in which case that value must match.
// Errors are *postern.Error values; the lookup's errors are returned as is.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte) (*Result, error) {
	target := requestTargetOf(r)
	query, err := parseQuery(target.rawQuery)
	if err != nil {
		return nil, err
	}
	s, err := parseSigned(r, query)
	if err != nil {
		return nil, err
	}
	if err := v.checkTime(s); err != nil {
		return nil, err
	}
	payloadHash, unsignedPayload, err := v.payloadHash(r, body)
	if err != nil {
		return nil, err
	}
	// Everything that can be checked without the secret is checked before
	// the lookup, so malformed or stale requests never reach the store.
	headers, err := canonicalHeaders(r, s.signedHeaders)
	if err != nil {
		return nil, err
	}
	canonQuery := canonicalQuery(query, s.presigned)
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		return nil, incomplete("The request method %q is not a valid HTTP token.", clip(method))
	}

	if v.Lookup == nil {
		return nil, postern.Internal(nil, "sigv4: verifier has no secret lookup")
	}
	secret, err := v.Lookup(ctx, s.accessKeyID)
	if err != nil {
		return nil, err
	}
	if secret == "" {
		// An empty secret would make every signature forgeable.
		return nil, postern.Internal(nil, "sigv4: the secret for an access key is empty")
	}

	sk := scopeKey{accessKeyID: s.accessKeyID, date: s.scopeDate, region: s.region, service: s.service}
	key, cached := v.cache.get(sk, secret)
	if key == nil {
		key = deriveKey(secret, s.scopeDate, s.region, s.service)
	}
	ok := false
	// The normalised path is what AWS services sign. Clients that do not
	// normalise (the Go SDK among them) sign the path as sent; both are
	// functions of the request itself, so accepting either forges nothing.
	for _, uri := range canonicalURIs(target.path) {
		creq := canonicalRequest(method, uri, canonQuery, headers, s.signedList, payloadHash)
		if hmac.Equal(signature(key, s, creq), s.signature) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, mismatch()
	}
	// Only keys that verified a signature are cached, so a caller who knows
	// an access key id but not its secret cannot churn the cache.
	if !cached {
		v.cache.put(sk, secret, key)
	}

	res := &Result{
		AccessKeyID:     s.accessKeyID,
		Region:          s.region,
		Service:         s.service,
		SignedAt:        s.signedAt,
		SessionToken:    s.sessionToken,
		Presigned:       s.presigned,
		UnsignedPayload: unsignedPayload,
		Signature:       s.signature,
	}
	if s.presigned {
		res.Expires = s.signedAt.Add(time.Duration(s.expires) * time.Second)
	}
	return res, nil
}

// Identify returns the access key id a request claims to be signed with,
// without verifying anything, or "" if there is none that looks valid. It is
// meant for audit records of failed calls.
func Identify(r *http.Request) string {
	var cred string
	if h := r.Header.Get("Authorization"); h != "" {
		if _, params, ok := strings.Cut(strings.TrimSpace(h), " "); ok {
			for _, p := range strings.Split(params, ",") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == "Credential" {
					cred = val
					break
				}
			}
		}
	} else if q, err := parseQuery(requestTargetOf(r).rawQuery); err == nil {
		cred = q.get("X-Amz-Credential")
	}
	id, _, _ := strings.Cut(cred, "/")
	if !validAccessKeyID(id) {
		return ""
	}
	return id
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) maxSkew() time.Duration {
	if v.MaxSkew > 0 {
		return v.MaxSkew
	}
	return DefaultMaxSkew
}

// checkTime enforces the clock-skew window (header form) or the validity
// window of a presigned URL.
func (v *Verifier) checkTime(s *signed) error {
	now := v.now().UTC()
	skew := v.maxSkew()
	if s.signedAt.After(now.Add(skew)) {
		return invalid("Signature not yet current: %s is still later than %s (%s + %s min.)",
			s.amzDate, now.Add(skew).Format(amzDateLayout), now.Format(amzDateLayout), minutes(skew))
	}
	if s.presigned {
		expiry := s.signedAt.Add(time.Duration(s.expires) * time.Second)
		if expiry.Before(now) {
			return invalid("Signature expired: the presigned URL signed at %s with X-Amz-Expires=%d expired at %s; it is now %s.",
				s.amzDate, s.expires, expiry.Format(amzDateLayout), now.Format(amzDateLayout))
		}
		return nil
	}
	if s.signedAt.Before(now.Add(-skew)) {
		return invalid("Signature expired: %s is now earlier than %s (%s - %s min.)",
			s.amzDate, now.Add(-skew).Format(amzDateLayout), now.Format(amzDateLayout), minutes(skew))
	}
	return nil
}

// payloadHash returns the hash line of the canonical request. Non-S3
// clients send no X-Amz-Content-Sha256, so the body is hashed; when the
// header is sent, a hex hash must match the body (the signature covers the
// header, not the body), and UNSIGNED-PAYLOAD is honoured only as configured.
func (v *Verifier) payloadHash(r *http.Request, body []byte) (hash string, unsigned bool, err error) {
	sum := sha256.Sum256(body)
	computed := hex.EncodeToString(sum[:])
	vals := r.Header.Values("X-Amz-Content-Sha256")
	switch {
	case len(vals) == 0:
		return computed, false, nil
	case len(vals) > 1:
		return "", false, incomplete("X-Amz-Content-Sha256 must be sent once.")
	}
	claimed := strings.TrimSpace(vals[0])
	switch {
	case isHexSHA256(claimed):
		if !strings.EqualFold(claimed, computed) {
			return "", false, invalid("The provided X-Amz-Content-Sha256 header does not match the SHA-256 of the request body.")
		}
		return claimed, false, nil
	case claimed == unsignedPayloadLiteral:
		if len(body) > 0 && !v.AllowUnsignedPayload {
			return "", false, invalid("X-Amz-Content-Sha256: UNSIGNED-PAYLOAD is not accepted for a request with a body; sign the SHA-256 of the body.")
		}
		return claimed, true, nil
	default:
		// STREAMING-* payloads need chunk signatures, which Postern's APIs
		// never use.
		return "", false, invalid("X-Amz-Content-Sha256 value %q is not supported; send the hex SHA-256 of the body.", clip(claimed))
	}
}

// deriveKey computes the signing key for one day, region and service.
func deriveKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, terminator)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// signature returns the raw signature of a canonical request.
func signature(key []byte, s *signed, creq string) []byte {
	sum := sha256.Sum256([]byte(creq))
	var sts strings.Builder
	sts.Grow(len(algorithm) + len(s.amzDate) + 64 + 64)
	sts.WriteString(algorithm)
	sts.WriteByte('\n')
	sts.WriteString(s.amzDate)
	sts.WriteByte('\n')
	sts.WriteString(s.scope())
	sts.WriteByte('\n')
	sts.WriteString(hex.EncodeToString(sum[:]))
	return hmacSHA256(key, sts.String())
}

func minutes(d time.Duration) string {
	return strconv.FormatFloat(d.Minutes(), 'f', -1, 64)
}

func isHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isToken reports whether s is an HTTP token (RFC 9110), as a method must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// clip shortens a client-supplied value for an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

func missingToken() error {
	return postern.CodedErrorf(postern.KindUnauthenticated, CodeMissingToken, "Request is missing Authentication Token")
}

func incomplete(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindUnauthenticated, CodeIncomplete, format, args...)
}

func invalid(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindUnauthenticated, CodeInvalid, format, args...)
}

func mismatch() error {
	return invalid("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
}
