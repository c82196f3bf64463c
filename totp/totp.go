// Package totp implements time-based one-time passwords (RFC 6238) as
// authenticator apps compute them: HMAC-SHA-1, six digits, 30-second steps,
// secrets exchanged as unpadded base32 in an otpauth:// URI.
package totp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"
)

const (
	// Digits is the length of a code.
	Digits = 6
	// Period is the length of a time step.
	Period = 30 * time.Second
	// SecretSize is the size of a new secret: 160 bits, as RFC 4226
	// recommends for HMAC-SHA-1.
	SecretSize = 20
)

// b32 is RFC 4648 base32 without padding, the form otpauth URIs use.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a new random secret.
func NewSecret() []byte {
	s := make([]byte, SecretSize)
	if _, err := rand.Read(s); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return s
}

// EncodeSecret returns the base32 form of a secret that apps accept.
func EncodeSecret(secret []byte) string { return b32.EncodeToString(secret) }

// DecodeSecret parses a base32 secret, ignoring case, spaces and padding.
func DecodeSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.TrimRight(strings.ReplaceAll(s, " ", ""), "="))
	b, err := b32.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("totp: the secret is not base32")
	}
	return b, nil
}

// URI returns the otpauth:// URI that apps import (as a QR code or text):
// otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER.
func URI(issuer, account string, secret []byte) string {
	label := url.PathEscape(issuer) + ":" + url.PathEscape(account)
	q := "secret=" + EncodeSecret(secret) + "&issuer=" + url.QueryEscape(issuer)
	return "otpauth://totp/" + label + "?" + q
}

// Step returns the time step that t falls in.
func Step(t time.Time) int64 { return t.Unix() / int64(Period/time.Second) }

// Code returns the code of a time step.
func Code(secret []byte, step int64) string {
	return hotp(secret, uint64(step), Digits)
}

// At returns the code that is current at t.
func At(secret []byte, t time.Time) string { return Code(secret, Step(t)) }

// hotp is RFC 4226's HOTP with SHA-1 and dynamic truncation.
func hotp(secret []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod)
}

// Match returns the step, among the one current at t and its neighbours
// within window steps, whose code is code. Callers must remember the step
// and refuse it (and earlier ones) next time, so that a code works once.
func Match(secret []byte, code string, t time.Time, window int) (step int64, ok bool) {
	if len(code) != Digits {
		return 0, false
	}
	now := Step(t)
	found := false
	// Compare against every candidate, whatever matched, so that the time
	// taken says nothing about which step (if any) did.
	for d := -int64(window); d <= int64(window); d++ {
		if subtle.ConstantTimeCompare([]byte(Code(secret, now+d)), []byte(code)) == 1 && !found {
			step, found = now+d, true
		}
	}
	return step, found
}
