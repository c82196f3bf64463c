package authkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
)

// blob builds an SSH wire-format public key blob: string type, then rest.
func blob(typ string, rest []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(typ)))
	b = append(b, typ...)
	return append(b, rest...)
}

func fp(b []byte) string {
	sum := sha256.Sum256(b)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func TestCheckKeyLine(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rest := binary.BigEndian.AppendUint32(nil, uint32(len(pub)))
	rest = append(rest, pub...)
	good := blob("ssh-ed25519", rest)
	b64 := base64.StdEncoding.EncodeToString(good)

	line, err := checkKeyLine("  ssh-ed25519 "+b64+"\n", fp(good))
	if err != nil || line != "ssh-ed25519 "+b64 {
		t.Fatalf("good key: %q, %v", line, err)
	}

	other := blob("ssh-rsa", rest)
	for name, tc := range map[string]struct{ line, fp string }{
		"no key data":             {"ssh-ed25519", fp(good)},
		"wrong fingerprint":       {"ssh-ed25519 " + b64, fp(other)},
		"type differs from blob":  {"ssh-rsa " + b64, fp(good)},
		"option smuggled in type": {`command="sh" ` + b64, fp(good)},
		"second key after blank":  {"ssh-ed25519 " + b64 + " ssh-ed25519 " + b64, fp(good)},
		"comment":                 {"ssh-ed25519 " + b64 + " me@host", fp(good)},
		"not base64":              {"ssh-ed25519 !!!!", fp(good)},
		"blob too short":          {"ssh-ed25519 " + base64.StdEncoding.EncodeToString([]byte{0, 0}), fp([]byte{0, 0})},
		"length past the blob":    {"ssh-ed25519 " + base64.StdEncoding.EncodeToString([]byte{0, 0, 1, 0, 's'}), fp([]byte{0, 0, 1, 0, 's'})},
		"newline inside":          {"ssh-ed25519 " + b64[:10] + "\n" + b64[10:], fp(good)},
	} {
		if got, err := checkKeyLine(tc.line, tc.fp); err == nil {
			t.Errorf("%s: accepted as %q", name, got)
		} else if strings.Contains(err.Error(), b64) {
			t.Errorf("%s: error echoes the key: %v", name, err)
		}
	}
}
