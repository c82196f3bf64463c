package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/postern-dev/postern"
)

// FuzzVerify checks two properties.
//
// raw is any HTTP request, seeded with the test-suite vectors: verifying it
// never panics, and a failure is always a *postern.Error of an expected kind
// with a code and a message that holds no secret.
//
// path, query and body make a request that the AWS SDK's signer signs, in
// the header form and presigned: both must verify, over the wire and in
// process.
func FuzzVerify(f *testing.F) {
	for _, vec := range vectors {
		f.Add(vec.raw(), "/", "", []byte(vec.body))
	}
	for _, c := range oracleCases {
		req, body := c.sign(f, testSecret, testNow)
		var buf bytes.Buffer
		req.Body = io.NopCloser(bytes.NewReader(body))
		if err := req.Write(&buf); err != nil {
			f.Fatal(err)
		}
		p := c.path
		if p == "" {
			p = "/"
		}
		f.Add(buf.String(), p, c.query, body)
	}
	f.Add("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "/a/../b//c/./d", "a=%zz&b=1;2&c", []byte{0, 0xff})

	f.Fuzz(func(t *testing.T, raw, path, query string, body []byte) {
		verifyArbitrary(t, raw)
		verifySDKSigned(t, path, query, body)
	})
}

func verifyArbitrary(t *testing.T, raw string) {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	_ = Identify(r)
	keys := map[string]string{suiteAKID: suiteSecret, testAKID: testSecret}
	for _, v := range []*Verifier{
		func() *Verifier { v, _ := newTestVerifier(suiteTime, keys); return v }(),
		func() *Verifier { v, _ := newTestVerifier(testNow, keys); return v }(),
	} {
		res, err := v.Verify(context.Background(), r, body)
		if err == nil {
			if res == nil || res.AccessKeyID == "" {
				t.Fatalf("verified with result %+v", res)
			}
			continue
		}
		var pe *postern.Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is a %T, not a *postern.Error", err, err)
		}
		switch pe.Kind {
		case postern.KindUnauthenticated, postern.KindUnknownKey, postern.KindInvalid:
		default:
			t.Fatalf("error of unexpected kind %s: %v", pe.Kind, pe)
		}
		if pe.Code == "" || pe.Message == "" {
			t.Fatalf("error without code or message: %#v", pe)
		}
		if strings.Contains(pe.Error(), suiteSecret) || strings.Contains(pe.Error(), testSecret) {
			t.Fatalf("error mentions a secret: %v", pe)
		}
	}
}

func verifySDKSigned(t *testing.T, path, query string, body []byte) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	// Signature parameters in the query would make the request claim two
	// signatures (or two values for one), which the verifier rightly
	// refuses; the SDK does not stop a caller from doing that.
	if q, _ := url.ParseQuery(query); q.Has(qSignature) || q.Has(qAlgorithm) || q.Has(qCredential) {
		return
	}
	header := oracleCase{name: "fuzz", method: "POST", url: "https://example.amazonaws.com", path: path, query: query,
		header:  http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
		body:    string(body),
		service: "ec2-instance-connect", region: "us-east-1"}
	presigned := header
	presigned.method, presigned.header, presigned.expires, presigned.token = "GET", nil, 60, "tok"

	for _, c := range []oracleCase{header, presigned} {
		req, b := c.sign(t, testSecret, testNow)
		v, _ := newTestVerifier(testNow, map[string]string{testAKID: testSecret})
		if _, err := v.Verify(context.Background(), req, b); err != nil {
			t.Fatalf("%s, in process: %v\npath %q query %q -> %s", c.method, err, path, query, req.URL)
		}
		sr, sb := overTheWire(t, req, b)
		if _, err := v.Verify(context.Background(), sr, sb); err != nil {
			t.Fatalf("%s, over the wire: %v\npath %q query %q -> %s", c.method, err, path, query, sr.RequestURI)
		}
	}
}
