package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

const (
	testAKID   = "AKIAPOSTERNTEST00001"
	testSecret = "pOstern/Test+Secret/0123456789abcdefghijk"
)

// testNow is the fixed clock of the oracle tests.
var testNow = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

func errUnknownKey() error {
	return postern.CodedErrorf(postern.KindUnknownKey, "UnrecognizedClientException",
		"The security token included in the request is invalid.")
}

// staticLookup serves secrets from a map; it counts calls so tests can
// tell when the store was consulted.
type staticLookup struct {
	keys  map[string]string
	calls atomic.Int64
}

func (l *staticLookup) lookup(_ context.Context, id string) (string, error) {
	l.calls.Add(1)
	s, ok := l.keys[id]
	if !ok {
		return "", errUnknownKey()
	}
	return s, nil
}

// newTestVerifier returns a verifier that knows keys, with its clock
// stopped at now.
func newTestVerifier(now time.Time, keys map[string]string) (*Verifier, *staticLookup) {
	l := &staticLookup{keys: keys}
	v := NewVerifier(l.lookup)
	v.Now = func() time.Time { return now }
	return v, l
}

// wantError fails unless err is a *postern.Error of the kind and code.
func wantError(t *testing.T, err error, kind postern.Kind, code string) *postern.Error {
	t.Helper()
	var pe *postern.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v (%T), want *postern.Error %s/%s", err, err, kind, code)
	}
	if pe.Kind != kind || pe.Code != code {
		t.Fatalf("error = %s/%s %q, want %s/%s", pe.Kind, pe.Code, pe.Message, kind, code)
	}
	return pe
}

// parseWire parses a raw HTTP/1.1 request as a server would, and returns
// it with its body read.
func parseWire(t testing.TB, raw string) (*http.Request, []byte) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("parse request: %v\n%s", err, raw)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return r, body
}

// overTheWire sends a client request through HTTP/1.1 serialisation and
// parsing, so the verifier sees what a server sees (RequestURI set,
// Content-Length in the header, Host moved to r.Host).
func overTheWire(t testing.TB, req *http.Request, body []byte) (*http.Request, []byte) {
	t.Helper()
	req = req.Clone(context.Background())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	var buf bytes.Buffer
	if err := req.Write(&buf); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return parseWire(t, buf.String())
}

// setTarget replaces the request target of a server-side request.
func setTarget(r *http.Request, path, rawQuery string) {
	r.RequestURI = path
	if rawQuery != "" {
		r.RequestURI += "?" + rawQuery
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = path, path, rawQuery
}
