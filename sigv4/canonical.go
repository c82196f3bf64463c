package sigv4

import (
	"cmp"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/postern-dev/postern"
)

// requestTarget is the path and query as the client put them on the wire.
type requestTarget struct {
	path     string // escaped, as sent
	rawQuery string
}

// requestTargetOf prefers r.RequestURI, the bytes the client sent, over
// r.URL: the client signed those bytes, and a server's routing (StripPrefix
// and the like) may have rewritten r.URL since. Requests built in process
// have no RequestURI; for them r.URL is read the way signers read it.
func requestTargetOf(r *http.Request) requestTarget {
	if strings.HasPrefix(r.RequestURI, "/") {
		p, q, _ := strings.Cut(r.RequestURI, "?")
		return requestTarget{path: p, rawQuery: q}
	}
	u := r.URL
	if u == nil {
		return requestTarget{path: "/"}
	}
	var p string
	if u.Opaque != "" {
		// "//host/path" is how callers pre-escape a path for signers.
		o, _, _ := strings.Cut(u.Opaque, "?")
		o = strings.TrimPrefix(o, "//")
		if i := strings.IndexByte(o, '/'); i >= 0 {
			p = o[i:]
		}
	} else {
		p = u.EscapedPath()
	}
	if p == "" {
		p = "/"
	}
	return requestTarget{path: p, rawQuery: u.RawQuery}
}

// canonicalURIs returns the canonical URI AWS defines for non-S3 services
// (dot segments and repeated slashes removed, then every byte outside the
// unreserved set escaped again, so an escaped "%2F" becomes "%252F"),
// followed, when different, by the same encoding of the unnormalised path.
func canonicalURIs(path string) []string {
	if path == "" {
		path = "/"
	}
	norm := normalizePath(path)
	uris := []string{awsEscape(norm, true)}
	if norm != path {
		uris = append(uris, awsEscape(path, true))
	}
	return uris
}

// normalizePath removes empty and "." segments and resolves "..", keeping
// a trailing slash, as AWS (and botocore) do before signing.
func normalizePath(p string) string {
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	n := "/" + strings.Join(out, "/")
	if len(out) > 0 && strings.HasSuffix(p, "/") {
		n += "/"
	}
	return n
}

// awsEscape percent-encodes every byte outside A-Z a-z 0-9 - _ . ~ (and '/'
// when keepSlash), with upper-case hex. Unlike url.QueryEscape it writes a
// space as %20, never '+'.
func awsEscape(s string, keepSlash bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && !(keepSlash && s[i] == '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || keepSlash && c == '/' {
			b = append(b, c)
		} else {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// queryParam is one decoded name=value pair, in the order sent.
type queryParam struct{ key, value string }

type queryParams []queryParam

// parseQuery decodes a raw query string the way signers read it: pairs
// split on '&', '+' meaning space, empty pairs skipped. Unlike
// url.ParseQuery it keeps pairs with ';', so that nothing the client sent
// escapes the signature.
func parseQuery(raw string) (queryParams, error) {
	var q queryParams
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, malformedQuery(err)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, malformedQuery(err)
		}
		q = append(q, queryParam{dk, dv})
	}
	return q, nil
}

func malformedQuery(err error) error {
	return postern.CodedErrorf(postern.KindInvalid, "MalformedQueryString", "The query string is malformed: %v", err)
}

func (q queryParams) count(key string) int {
	n := 0
	for _, p := range q {
		if p.key == key {
			n++
		}
	}
	return n
}

// get returns the first value of key, or "".
func (q queryParams) get(key string) string {
	for _, p := range q {
		if p.key == key {
			return p.value
		}
	}
	return ""
}

// canonicalQuery encodes every pair and sorts by encoded name, then value.
// Sorting after encoding matters: "%" sorts before letters and digits.
// A presigned URL's own signature is not part of what it signs.
func canonicalQuery(q queryParams, presigned bool) string {
	enc := make([]queryParam, 0, len(q))
	for _, p := range q {
		if presigned && p.key == qSignature {
			continue
		}
		enc = append(enc, queryParam{awsEscape(p.key, false), awsEscape(p.value, false)})
	}
	slices.SortFunc(enc, func(a, b queryParam) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.value, b.value))
	})
	var b strings.Builder
	for i, p := range enc {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

// canonicalHeaders returns the "name:value\n" lines for the signed headers.
// Host and Content-Length are not in r.Header on every request Go builds, so
// they come from r.Host and r.ContentLength.
func canonicalHeaders(r *http.Request, names []string) (string, error) {
	want := make(map[string][]string, len(names))
	for _, n := range names {
		want[n] = nil
	}
	// Sorted so that keys differing only in case (possible in maps built by
	// hand) merge in a stable order.
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		lk := strings.ToLower(k)
		if vals, ok := want[lk]; ok {
			want[lk] = append(vals, r.Header[k]...)
		}
	}

	var b strings.Builder
	for _, n := range names {
		vals := want[n]
		switch n {
		case "host":
			host := r.Host
			if host == "" && r.URL != nil {
				host = r.URL.Host
			}
			vals = []string{host}
		case "content-length":
			if r.ContentLength > 0 || r.ContentLength == 0 && len(vals) == 0 {
				vals = []string{strconv.FormatInt(r.ContentLength, 10)}
			}
		}
		if len(vals) == 0 {
			return "", invalid("The signed header %q is not present in the request.", clip(n))
		}
		b.WriteString(n)
		b.WriteByte(':')
		for i, v := range vals {
			if strings.ContainsAny(v, "\r\n") {
				// A line break would let one header pose as several.
				return "", incomplete("The signed header %q contains a line break.", clip(n))
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(trimAll(v))
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// trimAll trims a header value and collapses runs of spaces to one.
func trimAll(v string) string {
	v = strings.TrimSpace(v)
	if !strings.Contains(v, "  ") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' && i > 0 && v[i-1] == ' ' {
			continue
		}
		b = append(b, v[i])
	}
	return string(b)
}

func canonicalRequest(method, uri, query, headers, signedList, payloadHash string) string {
	var b strings.Builder
	b.Grow(len(method) + len(uri) + len(query) + len(headers) + len(signedList) + len(payloadHash) + 5)
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(uri)
	b.WriteByte('\n')
	b.WriteString(query)
	b.WriteByte('\n')
	b.WriteString(headers)
	b.WriteByte('\n')
	b.WriteString(signedList)
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}
