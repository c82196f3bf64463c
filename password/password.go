// Package password hashes console passwords with Argon2id and judges
// whether a new one is strong enough. Hashes are PHC strings
// ($argon2id$v=19$m=…,t=…,p=…$salt$hash), so that the parameters travel
// with each hash and can be raised without invalidating old ones.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id's cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams is RFC 9106's second recommended option (64 MiB, three
// passes, four lanes).
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 4, SaltLen: 16, KeyLen: 32}

// Length limits. The upper one bounds the work an attacker can ask of the
// hash function; AWS allows 128 characters.
const (
	MinLength = 12
	MaxLength = 128
)

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of pw with a new random salt.
func Hash(pw string, p Params) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// ErrMalformed means a stored hash is not a PHC string this package wrote.
var ErrMalformed = errors.New("password: malformed hash")

// Verify reports whether pw matches the PHC string hash, comparing in
// constant time.
func Verify(pw, hash string) (bool, error) {
	p, salt, key, err := parse(hash)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

func parse(hash string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrMalformed
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, ErrMalformed
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.Memory > 1<<22 || p.Time > 64 {
		return p, nil, nil, ErrMalformed
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, ErrMalformed
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 {
		return p, nil, nil, ErrMalformed
	}
	return p, salt, key, nil
}

// common are passwords (and stems) that attackers try first; a password
// that is one of them, or one of them with a few characters around it, is
// refused.
var common = []string{
	"password", "passw0rd", "p@ssw0rd", "qwerty", "qwertyuiop", "asdfghjkl", "zxcvbnm",
	"letmein", "welcome", "iloveyou", "admin", "administrator", "changeme", "monkey",
	"dragon", "football", "baseball", "sunshine", "princess", "trustno1", "abc123",
	"postern", "secret", "default", "login", "master", "azerty",
}

// Check returns an error, worded for the person choosing it, when pw is
// too short, too long or obviously weak for user.
func Check(pw, user string) error {
	n := utf8.RuneCountInString(pw)
	switch {
	case !utf8.ValidString(pw):
		return errors.New("the password is not valid UTF-8")
	case n < MinLength:
		return fmt.Errorf("the password must be at least %d characters long (it has %d)", MinLength, n)
	case n > MaxLength:
		return fmt.Errorf("the password must be at most %d characters long", MaxLength)
	}
	lower := strings.ToLower(pw)
	if user != "" && len(user) >= 3 && strings.Contains(lower, strings.ToLower(user)) {
		return errors.New("the password must not contain the user name")
	}
	distinct := map[rune]bool{}
	for _, r := range lower {
		distinct[r] = true
	}
	if len(distinct) < 5 {
		return errors.New("the password is too repetitive: use at least 5 different characters")
	}
	if isSequence(lower) {
		return errors.New("the password is a keyboard or number sequence")
	}
	for _, w := range common {
		// A common word padded with a few characters ("password1234") is
		// no stronger than the word.
		if strings.Contains(lower, w) && n-utf8.RuneCountInString(w) < 6 {
			return errors.New("the password is too common: choose one that is not built on a well-known password")
		}
	}
	return nil
}

// isSequence reports whether s is a run of consecutive characters, up or
// down ("123456789012", "abcdefghijkl"), allowing the digits to wrap.
func isSequence(s string) bool {
	rs := []rune(s)
	up, down := true, true
	for i := 1; i < len(rs); i++ {
		d := rs[i] - rs[i-1]
		wrapUp := rs[i-1] == '9' && rs[i] == '0'
		wrapDown := rs[i-1] == '0' && rs[i] == '9'
		up = up && (d == 1 || wrapUp)
		down = down && (d == -1 || wrapDown)
	}
	return up || down
}
