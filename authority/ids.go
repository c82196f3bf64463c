package authority

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// NewResourceID returns prefix + "-" + 17 random hex digits.
func NewResourceID(prefix string) string {
	var b [9]byte
	mustRead(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])[:17]
}

// newUniqueID returns an IAM unique id: a four-letter prefix (AIDA for
// users, AGPA for groups) and 17 upper-case base32 characters.
func newUniqueID(prefix string) string {
	var b [11]byte
	mustRead(b[:])
	return prefix + base32.StdEncoding.EncodeToString(b[:])[:17]
}

// newAccessKey returns an AKIA… id and a 40-character secret.
func newAccessKey() (id, secret string) {
	var b [10]byte
	mustRead(b[:])
	id = "AKIA" + base32.StdEncoding.EncodeToString(b[:])
	var s [30]byte
	mustRead(s[:])
	secret = base64.StdEncoding.EncodeToString(s[:])
	// Keep the secret copy-paste friendly: no characters a shell treats
	// specially; base64 gives exactly 40 characters for 30 bytes.
	secret = strings.NewReplacer("+", "A", "/", "z").Replace(secret)
	return id, secret
}

func mustRead(b []byte) {
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
}
