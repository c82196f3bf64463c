// Package sshkey validates the SSH public keys users push: what
// SendSSHPublicKey accepts, and why it refuses the rest.
package sshkey

import (
	"crypto/rsa"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern"
)

// Length bounds of SendSSHPublicKey's SSHPublicKey field.
const (
	MinLength = 80
	MaxLength = 4096
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 2048
)

// Key is a validated public key.
type Key struct {
	Type        string        // e.g. "ssh-ed25519"
	Line        string        // "type base64", normalised, without comment or options
	Fingerprint string        // "SHA256:…", as ssh-keygen -l prints it
	PublicKey   ssh.PublicKey //
}

// accepted lists the key types Postern accepts: AWS's RSA and Ed25519, and
// ECDSA and FIDO security keys, which users ask for.
var accepted = map[string]bool{
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoRSA:        true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoSKED25519:  true,
	ssh.KeyAlgoSKECDSA256: true,
}

func invalid(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindInvalid, "InvalidArgsException", format, args...)
}

// Parse validates one public key line in OpenSSH authorized_keys format
// ("type base64 [comment]"). Errors never echo the input: a pasted private
// key must not travel further into logs or audit records.
func Parse(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.Contains(s, "PRIVATE KEY") || strings.HasPrefix(s, "PuTTY-User-Key-File"):
		return nil, invalid("SSHPublicKey holds a private key; send the public key (the .pub file) and keep the private key secret")
	case len(s) > MaxLength:
		return nil, invalid("SSHPublicKey is %d characters long; at most %d are allowed", len(s), MaxLength)
	case len(s) < MinLength:
		return nil, invalid("SSHPublicKey is %d characters long; at least %d are required", len(s), MinLength)
	case strings.ContainsAny(s, "\r\n"):
		return nil, invalid("SSHPublicKey must be a single key on one line")
	case strings.HasPrefix(s, "-----BEGIN") || strings.HasPrefix(s, "---- BEGIN"):
		return nil, invalid("SSHPublicKey is in PEM or RFC 4716 form; send the OpenSSH one-line form (ssh-keygen -i converts it)")
	}
	fields := strings.Fields(s)
	if strings.HasSuffix(fields[0], "-cert-v01@openssh.com") {
		return nil, invalid("SSHPublicKey is a certificate; send a plain public key")
	}
	if fields[0] == "ssh-dss" {
		return nil, invalid("DSA keys (ssh-dss) are not accepted; use Ed25519, ECDSA or RSA of at least %d bits", MinRSABits)
	}
	if !accepted[fields[0]] {
		if len(fields) > 1 && accepted[fields[1]] || strings.Contains(fields[0], "=") {
			return nil, invalid("SSHPublicKey must not carry authorized_keys options; send only the key")
		}
		return nil, invalid("SSHPublicKey is not an OpenSSH public key of an accepted type (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa, sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com)")
	}
	if len(fields) < 2 {
		return nil, invalid("SSHPublicKey has a type but no key data")
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(fields[0] + " " + fields[1]))
	if err != nil {
		return nil, invalid("SSHPublicKey is not a valid %s key: its data does not decode", fields[0])
	}
	if pk.Type() != fields[0] {
		return nil, invalid("SSHPublicKey says %s but holds a %s key", fields[0], pk.Type())
	}
	if pk.Type() == ssh.KeyAlgoRSA {
		ck, ok := pk.(ssh.CryptoPublicKey)
		if !ok {
			return nil, invalid("SSHPublicKey is not a valid RSA key")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return nil, invalid("SSHPublicKey is not a valid RSA key")
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return nil, invalid("SSHPublicKey is a %d-bit RSA key; at least %d bits are required", bits, MinRSABits)
		}
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	return &Key{Type: pk.Type(), Line: line, Fingerprint: ssh.FingerprintSHA256(pk), PublicKey: pk}, nil
}
