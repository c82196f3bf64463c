package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Redacted replaces the value of a field that looks secret, in CloudTrail's
// own words.
const Redacted = "HIDDEN_DUE_TO_SECURITY_REASONS"

// secretWords are the fragments that make a field name secret, written as
// normalize leaves them. A name matches when it contains one: this is a
// second line of defence behind callers that should not pass secrets in
// the first place, so it errs towards hiding.
var secretWords = []string{
	"secret",             // SecretAccessKey, ClientSecret
	"password",           // Password, NewPassword
	"passwd",             //
	"passphrase",         //
	"privatekey",         // PrivateKey, private_key, SSHPrivateKey
	"sessiontoken",       // SessionToken
	"securitytoken",      // X-Amz-Security-Token
	"accesstoken",        // AccessToken
	"refreshtoken",       // RefreshToken
	"authtoken",          // AuthToken
	"activationcode",     // the agent's one-time activation code
	"credential",         // Credentials (STS), Credential
	"authorization",      // the Authorization header carries a signature
	"xamzsignature",      // a presigned URL's signature is a 60-second bearer token
	"cookie",             // console session cookies
	"totp",               // one-time codes
	"authenticationcode", // MFA codes (EnableMFADevice)
	"stringseed",         // a virtual MFA device's Base32StringSeed
}

// notSecretWords are removed from a name before it is matched: SigV4's
// credential scope (date/region/service) names no secret and helps explain
// signature failures.
var notSecretWords = []string{"credentialscope"}

// normalize lowercases name and drops everything but letters and digits,
// so that "Private-Key", "private_key" and "privateKey" compare equal.
func normalize(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + ('a' - 'A'))
		}
	}
	return b.String()
}

// IsSecretName reports whether a field called name has its value replaced
// by Redacted in recorded events.
func IsSecretName(name string) bool {
	n := normalize(name)
	for _, w := range notSecretWords {
		n = strings.ReplaceAll(n, w, "")
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// redactMap returns a copy of m in which, at any depth, the value of every
// key that IsSecretName is Redacted. m itself is not changed: it belongs to
// the caller. Values of types other than JSON's own (structs, typed maps
// and slices) are converted through their JSON encoding, so their field
// names are checked as they will be recorded.
func redactMap(m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if IsSecretName(k) {
			out[k] = Redacted
			continue
		}
		rv, err := redactValue(v)
		if err != nil {
			return nil, err
		}
		out[k] = rv
	}
	return out, nil
}

func redactValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool, json.Number, time.Time,
		float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		[]string, []float64, []int, []int64:
		return v, nil
	case map[string]any:
		return redactMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			re, err := redactValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = re
		}
		return out, nil
	case []map[string]any:
		out := make([]any, len(v))
		for i, e := range v {
			re, err := redactMap(e)
			if err != nil {
				return nil, err
			}
			out[i] = re
		}
		return out, nil
	case map[string]string:
		out := make(map[string]any, len(v))
		for k, s := range v {
			if IsSecretName(k) {
				out[k] = Redacted
			} else {
				out[k] = s
			}
		}
		return out, nil
	}
	// Anything else (a struct, a pointer, json.RawMessage, a typed map or
	// slice) is redacted as the JSON it will become.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep large integers exact
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	return redactValue(generic)
}
