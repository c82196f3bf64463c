package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/postern-dev/postern"
)

// eicCase is the most common call Postern verifies.
var eicCase = oracleCases[0]

// tunnelCase is a presigned openTunnel URL.
var tunnelCase = oracleCases[10]

func TestMissingAuthentication(t *testing.T) {
	r, body := parseWire(t, "POST / HTTP/1.1\r\nHost: h\r\nX-Amz-Date: 20260314T100000Z\r\nContent-Length: 2\r\n\r\n{}")
	v, l := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
	_, err := v.Verify(context.Background(), r, body)
	pe := wantError(t, err, postern.KindUnauthenticated, CodeMissingToken)
	if pe.Message != "Request is missing Authentication Token" {
		t.Errorf("message = %q", pe.Message)
	}
	if l.calls.Load() != 0 {
		t.Errorf("lookup called %d times for an unsigned request", l.calls.Load())
	}
}

func TestIncompleteSignature(t *testing.T) {
	const (
		cred = "AKIAPOSTERNTEST00001/20260314/us-east-1/ec2/aws4_request"
		sig  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		date = "20260314T100000Z"
	)
	authz := func(c, sh, s string) string {
		return "AWS4-HMAC-SHA256 Credential=" + c + ", SignedHeaders=" + sh + ", Signature=" + s
	}
	presign := "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + strings.ReplaceAll(cred, "/", "%2F") +
		"&X-Amz-Date=" + date + "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + sig
	for _, tc := range []struct {
		name    string
		target  string
		headers map[string][]string
		inMsg   string // part of the message that names what is wrong
	}{
		{"algorithm", "/", map[string][]string{"Authorization": {"AWS4-HMAC-SHA1 Credential=" + cred + ", SignedHeaders=host, Signature=" + sig}}, "algorithm"},
		{"not sigv4", "/", map[string][]string{"Authorization": {"Bearer abc"}}, "algorithm"},
		{"empty", "/", map[string][]string{"Authorization": {""}}, "algorithm"},
		{"no signature", "/", map[string][]string{"Authorization": {"AWS4-HMAC-SHA256 Credential=" + cred + ", SignedHeaders=host"}}, "'Signature'"},
		{"no credential or headers", "/", map[string][]string{"Authorization": {"AWS4-HMAC-SHA256 Signature=" + sig}}, "'Credential'"},
		{"repeated parameter", "/", map[string][]string{"Authorization": {authz(cred, "host", sig) + ", Signature=" + sig}}, "more than once"},
		{"unknown parameter", "/", map[string][]string{"Authorization": {authz(cred, "host", sig) + ", Foo=bar"}}, "unknown parameter"},
		{"parameter without value", "/", map[string][]string{"Authorization": {authz(cred, "host", sig) + ", Foo"}}, "Key=Value"},
		{"two authorization headers", "/", map[string][]string{"Authorization": {authz(cred, "host", sig), authz(cred, "host", sig)}}, "once"},
		{"credential parts", "/", map[string][]string{"Authorization": {authz("AKIAPOSTERNTEST00001/20260314/us-east-1/aws4_request", "host", sig)}}, "Credential must have the form"},
		{"credential key id", "/", map[string][]string{"Authorization": {authz("AKIA-bad!/20260314/us-east-1/ec2/aws4_request", "host", sig)}}, "access key id"},
		{"credential date", "/", map[string][]string{"Authorization": {authz("AKIAPOSTERNTEST00001/2026-03-14/us-east-1/ec2/aws4_request", "host", sig)}}, "valid date"},
		{"credential region", "/", map[string][]string{"Authorization": {authz("AKIAPOSTERNTEST00001/20260314//ec2/aws4_request", "host", sig)}}, "region"},
		{"credential service", "/", map[string][]string{"Authorization": {authz("AKIAPOSTERNTEST00001/20260314/us-east-1/ec 2/aws4_request", "host", sig)}}, "service"},
		{"terminator", "/", map[string][]string{"Authorization": {authz("AKIAPOSTERNTEST00001/20260314/us-east-1/ec2/aws5_request", "host", sig)}}, "terminator"},
		{"scope date", "/", map[string][]string{"Authorization": {authz("AKIAPOSTERNTEST00001/20260313/us-east-1/ec2/aws4_request", "host", sig)}}, "Credential scope"},
		{"no x-amz-date", "/", map[string][]string{"Authorization": {authz(cred, "host", sig)}, "X-Amz-Date": nil}, "X-Amz-Date"},
		{"bad x-amz-date", "/", map[string][]string{"Authorization": {authz(cred, "host", sig)}, "X-Amz-Date": {"2026-03-14T10:00:00Z"}}, "X-Amz-Date"},
		{"two x-amz-dates", "/", map[string][]string{"Authorization": {authz(cred, "host", sig)}, "X-Amz-Date": {date, date}}, "X-Amz-Date"},
		{"host not signed", "/", map[string][]string{"Authorization": {authz(cred, "x-amz-date", sig)}}, "'Host'"},
		{"signed headers unsorted", "/", map[string][]string{"Authorization": {authz(cred, "x-amz-date;host", sig)}}, "sorted"},
		{"signed headers repeated", "/", map[string][]string{"Authorization": {authz(cred, "host;host", sig)}}, "sorted"},
		{"signed headers upper case", "/", map[string][]string{"Authorization": {authz(cred, "Host;x-amz-date", sig)}}, "lower-case"},
		{"signed headers empty", "/", map[string][]string{"Authorization": {authz(cred, "", sig)}}, "SignedHeaders"},
		{"signature short", "/", map[string][]string{"Authorization": {authz(cred, "host", sig[:63])}}, "64 hexadecimal"},
		{"signature not hex", "/", map[string][]string{"Authorization": {authz(cred, "host", strings.Repeat("zz", 32))}}, "64 hexadecimal"},
		{"token not signed", "/", map[string][]string{"Authorization": {authz(cred, "host", sig)}, "X-Amz-Security-Token": {"tok"}}, "X-Amz-Security-Token"},
		{"both forms", presign + "&X-Amz-Expires=60", map[string][]string{"Authorization": {authz(cred, "host", sig)}}, "Only one"},
		{"presigned no expires", presign, nil, "'X-Amz-Expires'"},
		{"presigned expires zero", presign + "&X-Amz-Expires=0", nil, "X-Amz-Expires"},
		{"presigned expires too long", presign + "&X-Amz-Expires=604801", nil, "X-Amz-Expires"},
		{"presigned expires not a number", presign + "&X-Amz-Expires=1e3", nil, "X-Amz-Expires"},
		{"presigned two signatures", presign + "&X-Amz-Expires=60&X-Amz-Signature=" + sig, nil, "once"},
		{"presigned algorithm", strings.Replace(presign, "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1) + "&X-Amz-Expires=60", nil, "X-Amz-Algorithm"},
		{"presigned only algorithm", "/?X-Amz-Algorithm=AWS4-HMAC-SHA256", nil, "'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders', 'X-Amz-Signature'"},
		{"presigned bad date", strings.Replace(presign, date, "20260314", 1) + "&X-Amz-Expires=60", nil, "X-Amz-Date"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "GET " + tc.target + " HTTP/1.1\r\nHost: ec2.us-east-1.amazonaws.com\r\n"
			if _, set := tc.headers["X-Amz-Date"]; !set && !strings.Contains(tc.target, "X-Amz-Date") {
				raw += "X-Amz-Date: " + date + "\r\n"
			}
			for k, vs := range tc.headers {
				for _, v := range vs {
					raw += k + ": " + v + "\r\n"
				}
			}
			r, body := parseWire(t, raw+"\r\n")
			v, l := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
			_, err := v.Verify(context.Background(), r, body)
			pe := wantError(t, err, postern.KindUnauthenticated, CodeIncomplete)
			if !strings.Contains(pe.Message, tc.inMsg) {
				t.Errorf("message %q does not mention %q", pe.Message, tc.inMsg)
			}
			if l.calls.Load() != 0 {
				t.Errorf("lookup called for a malformed signature")
			}
		})
	}
}

func TestMalformedQuery(t *testing.T) {
	r, body := parseWire(t, "GET /?a=%zz HTTP/1.1\r\nHost: h\r\n\r\n")
	v, _ := newTestVerifier(testNow, nil)
	_, err := v.Verify(context.Background(), r, body)
	wantError(t, err, postern.KindInvalid, "MalformedQueryString")
}

func TestUnknownKey(t *testing.T) {
	req, body := eicCase.sign(t, testSecret, testNow)
	sr, sbody := overTheWire(t, req, body)
	v, l := newTestVerifier(testNow, map[string]string{"AKIAOTHER": testSecret})
	_, err := v.Verify(context.Background(), sr, sbody)
	wantError(t, err, postern.KindUnknownKey, "UnrecognizedClientException")
	if l.calls.Load() != 1 {
		t.Errorf("lookup calls = %d, want 1", l.calls.Load())
	}
}

func TestLookupErrorsPropagate(t *testing.T) {
	req, body := eicCase.sign(t, testSecret, testNow)
	sr, sbody := overTheWire(t, req, body)
	storeDown := &postern.Error{Kind: postern.KindUnavailable, Message: "database is down"}
	plain := errors.New("plain")
	for _, want := range []error{storeDown, plain} {
		v := NewVerifier(func(context.Context, string) (string, error) { return "", want })
		v.Now = func() time.Time { return testNow }
		if _, err := v.Verify(context.Background(), sr, sbody); err != want {
			t.Errorf("error = %v, want the lookup's own %v", err, want)
		}
	}

	v := NewVerifier(func(context.Context, string) (string, error) { return "", nil })
	v.Now = func() time.Time { return testNow }
	_, err := v.Verify(context.Background(), sr, sbody)
	if !postern.IsKind(err, postern.KindInternal) {
		t.Errorf("empty secret: error = %v, want internal", err)
	}

	_, err = (&Verifier{Now: v.Now}).Verify(context.Background(), sr, sbody)
	if !postern.IsKind(err, postern.KindInternal) {
		t.Errorf("no lookup: error = %v, want internal", err)
	}
}

func TestLookupGetsContextAndKeyID(t *testing.T) {
	type ctxKey struct{}
	req, body := eicCase.sign(t, testSecret, testNow)
	ctx := context.WithValue(context.Background(), ctxKey{}, "marker")
	var gotID string
	var gotMarker any
	v := NewVerifier(func(ctx context.Context, id string) (string, error) {
		gotID, gotMarker = id, ctx.Value(ctxKey{})
		return testSecret, nil
	})
	v.Now = func() time.Time { return testNow }
	if _, err := v.Verify(ctx, req, body); err != nil {
		t.Fatal(err)
	}
	if gotID != testAKID || gotMarker != "marker" {
		t.Errorf("lookup got id %q, ctx value %v", gotID, gotMarker)
	}
}

func TestClockSkew(t *testing.T) {
	signedAt := time.Date(2026, 3, 14, 9, 59, 30, 0, time.UTC)
	req, body := eicCase.sign(t, testSecret, signedAt)
	sr, sbody := overTheWire(t, req, body)
	for _, tc := range []struct {
		name string
		now  time.Time
		skew time.Duration
		msg  string
	}{
		{name: "on time", now: signedAt},
		{name: "5 min late", now: signedAt.Add(5 * time.Minute)},
		{name: "5 min early", now: signedAt.Add(-5 * time.Minute)},
		{name: "too late", now: signedAt.Add(5*time.Minute + time.Second),
			msg: "Signature expired: 20260314T095930Z is now earlier than 20260314T095931Z (20260314T100431Z - 5 min.)"},
		{name: "too early", now: signedAt.Add(-5*time.Minute - time.Second),
			msg: "Signature not yet current: 20260314T095930Z is still later than 20260314T095929Z (20260314T095429Z + 5 min.)"},
		{name: "custom skew", now: signedAt.Add(91 * time.Second), skew: 90 * time.Second,
			msg: "Signature expired: 20260314T095930Z is now earlier than 20260314T095931Z (20260314T100101Z - 1.5 min.)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, l := newTestVerifier(tc.now, map[string]string{testAKID: testSecret})
			if tc.skew != 0 {
				v.MaxSkew = tc.skew
			}
			_, err := v.Verify(context.Background(), sr, sbody)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			pe := wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
			if pe.Message != tc.msg {
				t.Errorf("message = %q\nwant      %q", pe.Message, tc.msg)
			}
			if l.calls.Load() != 0 {
				t.Errorf("lookup called for a stale request")
			}
		})
	}
}

func TestPresignedExpiry(t *testing.T) {
	signedAt := testNow
	req, _ := tunnelCase.sign(t, testSecret, signedAt)
	sr, sbody := overTheWire(t, req, nil)
	for _, tc := range []struct {
		name string
		now  time.Time
		msg  string
	}{
		{name: "fresh", now: signedAt.Add(time.Second)},
		{name: "last second", now: signedAt.Add(60 * time.Second)},
		// Unlike header signatures, a presigned URL is not bounded by the
		// skew in the past: its X-Amz-Expires is.
		{name: "expired", now: signedAt.Add(61 * time.Second),
			msg: "Signature expired: the presigned URL signed at 20260314T100000Z with X-Amz-Expires=60 expired at 20260314T100100Z; it is now 20260314T100101Z."},
		{name: "within skew of the future", now: signedAt.Add(-5 * time.Minute)},
		{name: "too far in the future", now: signedAt.Add(-5*time.Minute - time.Second),
			msg: "Signature not yet current: 20260314T100000Z is still later than 20260314T095959Z (20260314T095459Z + 5 min.)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := newTestVerifier(tc.now, map[string]string{testAKID: testSecret})
			_, err := v.Verify(context.Background(), sr, sbody)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			pe := wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
			if pe.Message != tc.msg {
				t.Errorf("message = %q\nwant      %q", pe.Message, tc.msg)
			}
		})
	}

	// A week-long URL is still good after the header-form skew window.
	long := oracleCases[12]
	req, _ = long.sign(t, testSecret, signedAt)
	v, _ := newTestVerifier(signedAt.Add(6*24*time.Hour), map[string]string{testAKID: testSecret})
	if _, err := v.Verify(context.Background(), req, nil); err != nil {
		t.Errorf("6 days into a 7-day URL: %v", err)
	}
}

// signWithContentSHA has the SDK sign a request that carries
// X-Amz-Content-Sha256 (as S3 clients do), with claimed as the payload hash.
func signWithContentSHA(t *testing.T, claimed string, body []byte) (*http.Request, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", "https://ec2-instance-connect.us-east-1.amazonaws.com/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Content-Sha256", claimed)
	creds := aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, claimed, "ec2-instance-connect", "us-east-1", testNow); err != nil {
		t.Fatal(err)
	}
	return overTheWire(t, req, body)
}

func TestContentSHA256Header(t *testing.T) {
	body := []byte(`{"InstanceId":"i-0123456789abcdef0"}`)
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	other := sha256.Sum256([]byte("something else"))

	v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
	r, b := signWithContentSHA(t, good, body)
	if _, err := v.Verify(context.Background(), r, b); err != nil {
		t.Errorf("matching hash: %v", err)
	}
	r, b = signWithContentSHA(t, strings.ToUpper(good), body)
	if _, err := v.Verify(context.Background(), r, b); err != nil {
		t.Errorf("matching upper-case hash: %v", err)
	}

	// A correctly signed hash of another body: the signature is fine, but it
	// does not cover this body.
	r, b = signWithContentSHA(t, hex.EncodeToString(other[:]), body)
	_, err := v.Verify(context.Background(), r, b)
	pe := wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
	if !strings.Contains(pe.Message, "X-Amz-Content-Sha256") {
		t.Errorf("message = %q", pe.Message)
	}

	r, b = signWithContentSHA(t, "UNSIGNED-PAYLOAD", body)
	_, err = v.Verify(context.Background(), r, b)
	wantError(t, err, postern.KindUnauthenticated, CodeInvalid)

	r, b = signWithContentSHA(t, "UNSIGNED-PAYLOAD", nil)
	res, err := v.Verify(context.Background(), r, b)
	if err != nil || !res.UnsignedPayload {
		t.Errorf("UNSIGNED-PAYLOAD without a body: %+v, %v", res, err)
	}

	v.AllowUnsignedPayload = true
	r, b = signWithContentSHA(t, "UNSIGNED-PAYLOAD", body)
	res, err = v.Verify(context.Background(), r, b)
	if err != nil || !res.UnsignedPayload {
		t.Errorf("UNSIGNED-PAYLOAD allowed: %+v, %v", res, err)
	}

	r, b = signWithContentSHA(t, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", body)
	_, err = v.Verify(context.Background(), r, b)
	wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
}

func TestSignedHeaderMissing(t *testing.T) {
	req, body := oracleCases[9].sign(t, testSecret, testNow) // has X-Multi
	sr, sbody := overTheWire(t, req, body)
	sr.Header.Del("X-Multi")
	v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
	_, err := v.Verify(context.Background(), sr, sbody)
	pe := wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
	if !strings.Contains(pe.Message, `"x-multi"`) {
		t.Errorf("message = %q", pe.Message)
	}

	// Reordering the values of a repeated header changes what was signed.
	sr, sbody = overTheWire(t, req, body)
	vals := sr.Header["X-Multi"]
	vals[0], vals[2] = vals[2], vals[0]
	_, err = v.Verify(context.Background(), sr, sbody)
	wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
}

// Unsigned headers may change freely: proxies add them.
func TestUnsignedHeadersIgnored(t *testing.T) {
	req, body := eicCase.sign(t, testSecret, testNow)
	sr, sbody := overTheWire(t, req, body)
	sr.Header.Set("User-Agent", "something else")
	sr.Header.Add("X-Forwarded-For", "203.0.113.9")
	v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
	if _, err := v.Verify(context.Background(), sr, sbody); err != nil {
		t.Fatal(err)
	}
}

func TestMismatchMessage(t *testing.T) {
	req, body := eicCase.sign(t, testSecret, testNow)
	sr, sbody := overTheWire(t, req, body)
	v, _ := newTestVerifier(testNow, map[string]string{testAKID: "another secret"})
	_, err := v.Verify(context.Background(), sr, sbody)
	pe := wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
	const want = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
	if pe.Message != want || pe.Err != nil {
		t.Errorf("error = %q (cause %v), want %q", pe.Message, pe.Err, want)
	}
}

func TestDerivedKeyCache(t *testing.T) {
	keys := map[string]string{testAKID: testSecret}
	v, _ := newTestVerifier(testNow, keys)
	req, body := eicCase.sign(t, testSecret, testNow)
	sr, sbody := overTheWire(t, req, body)

	// A failed verification caches nothing.
	bad, badBody := overTheWire(t, req, append(bytes.Clone(body), ' '))
	if _, err := v.Verify(context.Background(), bad, badBody); err == nil {
		t.Fatal("tampered body verified")
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d keys after a failure", n)
	}

	cold, err := v.Verify(context.Background(), sr, sbody)
	if err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n != 1 {
		t.Fatalf("cache holds %d keys, want 1", n)
	}
	sk := scopeKey{testAKID, "20260314", "us-east-1", "ec2-instance-connect"}
	if k, ok := v.cache.get(sk, testSecret); !ok || !bytes.Equal(k, deriveKey(testSecret, sk.date, sk.region, sk.service)) {
		t.Fatalf("cache entry = %x, %v", k, ok)
	}
	warm, err := v.Verify(context.Background(), sr, sbody)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(warm, cold) {
		t.Errorf("warm result %+v differs from cold %+v", warm, cold)
	}

	// The secret is rotated: the key id and scope are the same, but the old
	// signature must no longer verify, and the new one must.
	keys[testAKID] = "rotated/Secret+0123456789abcdefghijklmn"
	if _, err := v.Verify(context.Background(), sr, sbody); err == nil {
		t.Fatal("request signed with the old secret verified after rotation")
	} else {
		wantError(t, err, postern.KindUnauthenticated, CodeInvalid)
	}
	req2, body2 := eicCase.sign(t, keys[testAKID], testNow)
	sr2, sbody2 := overTheWire(t, req2, body2)
	if _, err := v.Verify(context.Background(), sr2, sbody2); err != nil {
		t.Fatalf("request signed with the new secret: %v", err)
	}
	if k, ok := v.cache.get(sk, keys[testAKID]); !ok || !bytes.Equal(k, deriveKey(keys[testAKID], sk.date, sk.region, sk.service)) {
		t.Errorf("cache was not updated to the new secret")
	}
	if _, ok := v.cache.get(sk, testSecret); ok {
		t.Errorf("cache still answers for the old secret")
	}
}

// One Verifier serves all requests; its cache must be safe for that.
func TestConcurrentVerify(t *testing.T) {
	v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
	type signedReq struct {
		r    *http.Request
		body []byte
	}
	var reqs []signedReq
	for _, c := range oracleCases {
		req, body := c.sign(t, testSecret, testNow)
		sr, sbody := overTheWire(t, req, body)
		reqs = append(reqs, signedReq{sr, sbody})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(reqs))
	for g := range 8 {
		wg.Go(func() {
			for i := range reqs {
				r := reqs[(i+g)%len(reqs)]
				if _, err := v.Verify(context.Background(), r.r, r.body); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestKeyCacheBounded(t *testing.T) {
	var c keyCache
	for i := range maxCachedKeys + 100 {
		c.put(scopeKey{fmt.Sprintf("AKIA%d", i), "20260314", "us-east-1", "ec2"}, "s", []byte{byte(i)})
	}
	if n := c.len(); n != maxCachedKeys {
		t.Errorf("cache holds %d keys, want %d", n, maxCachedKeys)
	}
	// Replacing an existing entry when full evicts nothing.
	last := scopeKey{fmt.Sprintf("AKIA%d", maxCachedKeys+99), "20260314", "us-east-1", "ec2"}
	c.put(last, "s2", []byte{1})
	if n := c.len(); n != maxCachedKeys {
		t.Errorf("cache holds %d keys after a replace, want %d", n, maxCachedKeys)
	}
	if _, ok := c.get(last, "s2"); !ok {
		t.Errorf("replaced entry missing")
	}
}

func TestIdentify(t *testing.T) {
	req, body := eicCase.sign(t, testSecret, testNow)
	sr, _ := overTheWire(t, req, body)
	if got := Identify(sr); got != testAKID {
		t.Errorf("header form: %q", got)
	}
	preq, _ := tunnelCase.sign(t, testSecret, testNow)
	psr, _ := overTheWire(t, preq, nil)
	if got := Identify(psr); got != testAKID {
		t.Errorf("presigned: %q", got)
	}
	if got := Identify(preq); got != testAKID {
		t.Errorf("presigned, in process: %q", got)
	}
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIA<script>/x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: garbage\r\n\r\n",
		"GET /?X-Amz-Credential=%2Fx HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /?X-Amz-Credential=%zz HTTP/1.1\r\nHost: h\r\n\r\n",
	} {
		r, _ := parseWire(t, raw)
		if got := Identify(r); got != "" {
			t.Errorf("Identify(%q) = %q, want empty", raw, got)
		}
	}
}

func TestCanonicalURI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/openTunnel", "/openTunnel"},
		{"/a%20b", "/a%2520b"},
		{"/a%2Fb/c", "/a%252Fb/c"},
		{"/a b", "/a%20b"},
		{"/x;y=z", "/x%3By%3Dz"},
		{"/a/./b/../c/", "/a/c/"},
		{"//a//b", "/a/b"},
		{"/a/b/..", "/a"},
		{"/../..", "/"},
		{"/%2E%2E/x", "/%252E%252E/x"}, // escaped dots are not dot segments
	} {
		if got := canonicalURIs(tc.in)[0]; got != tc.want {
			t.Errorf("canonical URI of %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalQuery(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"", ""},
		{"b=2&a=1", "a=1&b=2"},
		{"a=2&a=10&a=1", "a=1&a=10&a=2"},
		{"a+b=c+d", "a%20b=c%20d"},
		{"k=%7e&k2=~", "k=~&k2=~"},
		{"novalue&empty=", "empty=&novalue="},
		{"&&x=1&", "x=1"},
		{"a=1;b=2", "a=1%3Bb%3D2"},
		{"a-b=1&a%2Fb=2&a%2Db=3", "a%2Fb=2&a-b=1&a-b=3"}, // sorted after encoding
		{"X-Amz-Signature=abc&z=1", "z=1"},
	} {
		q, err := parseQuery(tc.raw)
		if err != nil {
			t.Fatalf("parseQuery(%q): %v", tc.raw, err)
		}
		if got := canonicalQuery(q, true); got != tc.want {
			t.Errorf("canonical query of %q = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	b.Run("header", func(b *testing.B) {
		req, body := eicCase.sign(b, testSecret, testNow)
		sr, sbody := overTheWire(b, req, body)
		v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(context.Background(), sr, sbody); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("header-cold-cache", func(b *testing.B) {
		req, body := eicCase.sign(b, testSecret, testNow)
		sr, sbody := overTheWire(b, req, body)
		l := &staticLookup{keys: map[string]string{testAKID: testSecret}}
		b.ReportAllocs()
		for b.Loop() {
			v := &Verifier{Lookup: l.lookup, Now: func() time.Time { return testNow }}
			if _, err := v.Verify(context.Background(), sr, sbody); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("presigned", func(b *testing.B) {
		req, _ := tunnelCase.sign(b, testSecret, testNow)
		sr, _ := overTheWire(b, req, nil)
		v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(context.Background(), sr, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
