package sigv4

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Query parameters of the presigned form.
const (
	qAlgorithm     = "X-Amz-Algorithm"
	qCredential    = "X-Amz-Credential"
	qDate          = "X-Amz-Date"
	qExpires       = "X-Amz-Expires"
	qSignedHeaders = "X-Amz-SignedHeaders"
	qSignature     = "X-Amz-Signature"
	qSecurityToken = "X-Amz-Security-Token"
)

// parseSigned reads what the request claims about its signature, in
// whichever form it uses, and checks that the claim is well formed.
func parseSigned(r *http.Request, q queryParams) (*signed, error) {
	auth := r.Header.Values("Authorization")
	presigned := q.count(qSignature) > 0 || q.count(qAlgorithm) > 0 || q.count(qCredential) > 0
	switch {
	case len(auth) == 0 && !presigned:
		return nil, missingToken()
	case len(auth) > 0 && presigned:
		// Two signatures would leave it ambiguous which one was checked.
		return nil, incomplete("Only one authentication mechanism is allowed: send either the Authorization header or the X-Amz-* query parameters, not both.")
	case len(auth) > 1:
		return nil, incomplete("The Authorization header must be sent once.")
	case presigned:
		return parsePresigned(q)
	default:
		return parseHeaderForm(r, auth[0])
	}
}

func parseHeaderForm(r *http.Request, auth string) (*signed, error) {
	alg, rest, _ := strings.Cut(strings.TrimSpace(auth), " ")
	if alg != algorithm {
		return nil, incomplete("Unsupported Authorization algorithm %q; only %s is supported.", clip(alg), algorithm)
	}
	var cred, signedList, sig string
	var seen [3]bool
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, incomplete("Authorization header parameter %q is not of the form Key=Value.", clip(part))
		}
		var i int
		switch k {
		case "Credential":
			i, cred = 0, val
		case "SignedHeaders":
			i, signedList = 1, val
		case "Signature":
			i, sig = 2, val
		default:
			return nil, incomplete("Authorization header has an unknown parameter %q.", clip(k))
		}
		if seen[i] {
			return nil, incomplete("Authorization header has the parameter %s more than once.", k)
		}
		seen[i] = true
	}
	var missing []string
	for i, name := range []string{"Credential", "SignedHeaders", "Signature"} {
		if !seen[i] {
			missing = append(missing, "Authorization header requires '"+name+"' parameter.")
		}
	}
	if len(missing) > 0 {
		return nil, incomplete("%s", strings.Join(missing, " "))
	}

	dates := r.Header.Values("X-Amz-Date")
	switch len(dates) {
	case 0:
		return nil, incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
	case 1:
	default:
		return nil, incomplete("The X-Amz-Date header must be sent once.")
	}
	s := &signed{}
	if err := s.fill(cred, strings.TrimSpace(dates[0]), signedList, sig); err != nil {
		return nil, err
	}
	switch tokens := r.Header.Values(qSecurityToken); len(tokens) {
	case 0:
	case 1:
		// An unsigned token could be swapped in transit for another
		// session's; every SDK signs it.
		if !s.signs("x-amz-security-token") {
			return nil, incomplete("X-Amz-Security-Token must be included in SignedHeaders.")
		}
		s.sessionToken = strings.TrimSpace(tokens[0])
	default:
		return nil, incomplete("The X-Amz-Security-Token header must be sent once.")
	}
	return s, nil
}

func parsePresigned(q queryParams) (*signed, error) {
	var missing []string
	for _, name := range []string{qAlgorithm, qCredential, qDate, qExpires, qSignedHeaders, qSignature} {
		switch q.count(name) {
		case 0:
			missing = append(missing, "'"+name+"'")
		case 1:
		default:
			return nil, incomplete("The query parameter %s must be sent once.", name)
		}
	}
	if len(missing) > 0 {
		return nil, incomplete("AWS query-string parameters must include %s. Re-examine the query-string parameters.", strings.Join(missing, ", "))
	}
	if alg := q.get(qAlgorithm); alg != algorithm {
		return nil, incomplete("Unsupported X-Amz-Algorithm %q; only %s is supported.", clip(alg), algorithm)
	}
	s := &signed{presigned: true}
	if err := s.fill(q.get(qCredential), q.get(qDate), q.get(qSignedHeaders), q.get(qSignature)); err != nil {
		return nil, err
	}
	exp, err := strconv.ParseInt(q.get(qExpires), 10, 64)
	if err != nil || exp < 1 || exp > maxPresignExpires {
		return nil, incomplete("X-Amz-Expires must be a whole number of seconds from 1 to %d (one week).", maxPresignExpires)
	}
	s.expires = exp
	switch q.count(qSecurityToken) {
	case 0:
	case 1:
		s.sessionToken = q.get(qSecurityToken)
	default:
		return nil, incomplete("The query parameter %s must be sent once.", qSecurityToken)
	}
	return s, nil
}

// fill parses the parts common to both forms.
func (s *signed) fill(cred, amzDate, signedList, sig string) error {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return incomplete("Credential must have the form <access key id>/<yyyymmdd>/<region>/<service>/aws4_request.")
	}
	if !validAccessKeyID(parts[0]) {
		return incomplete("Credential has a missing or malformed access key id.")
	}
	if !isDigits(parts[1], 8) {
		return incomplete("Credential should be scoped to a valid date in the form yyyymmdd, not %q.", clip(parts[1]))
	}
	if !validScopeName(parts[2]) {
		return incomplete("Credential should be scoped to a valid region, not %q.", clip(parts[2]))
	}
	if !validScopeName(parts[3]) {
		return incomplete("Credential should be scoped to a valid service, not %q.", clip(parts[3]))
	}
	if parts[4] != terminator {
		return incomplete("Credential should be scoped with a valid terminator: '%s', not %q.", terminator, clip(parts[4]))
	}
	s.accessKeyID, s.scopeDate, s.region, s.service = parts[0], parts[1], parts[2], parts[3]

	t, err := time.Parse(amzDateLayout, amzDate)
	if err != nil || len(amzDate) != len(amzDateLayout) {
		return incomplete("X-Amz-Date must be in the ISO 8601 basic format yyyymmddThhmmssZ, not %q.", clip(amzDate))
	}
	if amzDate[:8] != s.scopeDate {
		return incomplete("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			s.scopeDate, amzDate[:8], amzDate)
	}
	s.amzDate, s.signedAt = amzDate, t

	names, err := parseSignedHeaders(signedList)
	if err != nil {
		return err
	}
	s.signedHeaders, s.signedList = names, signedList

	if len(sig) != 2*32 {
		return incomplete("Signature must be 64 hexadecimal digits.")
	}
	raw, err := hex.DecodeString(sig)
	if err != nil {
		return incomplete("Signature must be 64 hexadecimal digits.")
	}
	s.signature = raw
	return nil
}

// parseSignedHeaders checks that the list is what a signer produces: lower
// case names, sorted, no repeats, host among them. The list is signed
// verbatim, so a different spelling of the same set would also fail later;
// checking here gives the client a clear reason.
func parseSignedHeaders(list string) ([]string, error) {
	if list == "" {
		return nil, incomplete("SignedHeaders must not be empty.")
	}
	names := strings.Split(list, ";")
	host := false
	for i, n := range names {
		if !isToken(n) || n != strings.ToLower(n) {
			return nil, incomplete("SignedHeaders must be lower-case header names separated by ';', not %q.", clip(list))
		}
		if i > 0 && names[i-1] >= n {
			return nil, incomplete("SignedHeaders must be sorted and must not repeat a name.")
		}
		host = host || n == "host"
	}
	if !host {
		return nil, incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}
	return names, nil
}

func (s *signed) signs(name string) bool {
	for _, n := range s.signedHeaders {
		if n == name {
			return true
		}
	}
	return false
}

// validAccessKeyID accepts the shapes of AWS and Postern key ids. Keeping it
// strict means Identify never hands a log line anything odd.
func validAccessKeyID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validScopeName accepts region and service names ("us-east-1",
// "ec2-instance-connect").
func validScopeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
