package authkeys

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
)

// checkKeyLine checks a signed record's key line without a full SSH key
// parser (which would double the helper's start-up): the server parsed and
// validated the key before it signed the record, so the helper only makes
// sure the line is "type base64" with nothing sshd could read as an option,
// that the blob names the same type, and that its SHA-256 fingerprint is
// the record's. It returns the line to print.
func checkKeyLine(line, fingerprint string) (string, error) {
	typ, b64, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok || typ == "" || strings.ContainsAny(b64, "\r\n") {
		return "", errors.New("record's key is not a \"type base64\" line")
	}
	for _, c := range typ {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '@' || c == '.') {
			return "", errors.New("record's key type is malformed")
		}
	}
	// Strict base64 admits no blank, quote or comma (line breaks, which
	// the decoder skips, were refused above): nothing after the type can
	// reach sshd as an option or a second key.
	blob, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", errors.New("record's key is not valid base64")
	}
	if len(blob) < 4 || uint64(binary.BigEndian.Uint32(blob)) > uint64(len(blob)-4) || string(blob[4:4+binary.BigEndian.Uint32(blob)]) != typ {
		return "", errors.New("record's key blob does not match its type")
	}
	sum := sha256.Sum256(blob)
	if "SHA256:"+base64.RawStdEncoding.EncodeToString(sum[:]) != fingerprint {
		return "", errors.New("record's fingerprint does not match its key")
	}
	return typ + " " + b64, nil
}
