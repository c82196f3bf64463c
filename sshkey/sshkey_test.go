package sshkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern"
)

func authorizedLine(t *testing.T, pub any) string {
	t.Helper()
	pk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

// skLine builds a FIDO key line: the wire form is the plain key plus an
// application string, which x/crypto parses but cannot generate.
func skLine(t *testing.T, typ string, body func(b *[]byte)) string {
	t.Helper()
	var b []byte
	put := func(s []byte) {
		n := len(s)
		b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		b = append(b, s...)
	}
	put([]byte(typ))
	body(&b)
	put([]byte("ssh:"))
	return typ + " " + base64.StdEncoding.EncodeToString(b) + " yubikey"
}

func TestParseAcceptsEveryAcceptedType(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	lines := map[string]string{
		ssh.KeyAlgoED25519: authorizedLine(t, edPub) + " alice@laptop",
		ssh.KeyAlgoRSA:     authorizedLine(t, &rsaKey.PublicKey),
	}
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, _ := ecdsa.GenerateKey(c, rand.Reader)
		l := authorizedLine(t, &k.PublicKey)
		lines[strings.Fields(l)[0]] = l
	}
	lines[ssh.KeyAlgoSKED25519] = skLine(t, ssh.KeyAlgoSKED25519, func(b *[]byte) {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		n := len(pub)
		*b = append(*b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		*b = append(*b, pub...)
	})
	lines[ssh.KeyAlgoSKECDSA256] = skLine(t, ssh.KeyAlgoSKECDSA256, func(b *[]byte) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		ek, _ := k.PublicKey.ECDH()
		for _, s := range [][]byte{[]byte("nistp256"), ek.Bytes()} {
			n := len(s)
			*b = append(*b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
			*b = append(*b, s...)
		}
	})
	for typ, line := range lines {
		k, err := Parse(line)
		if err != nil {
			t.Errorf("%s: %v", typ, err)
			continue
		}
		if k.Type != typ || !strings.HasPrefix(k.Fingerprint, "SHA256:") || strings.Contains(k.Line, "alice@laptop") || strings.Contains(k.Line, "yubikey") {
			t.Errorf("%s: got %+v", typ, k)
		}
	}
}

func TestParseRefusesWithReasons(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	good := authorizedLine(t, edPub)
	privDER, _ := ssh.MarshalPrivateKey(edPriv, "")
	privPEM := string(pem.EncodeToMemory(privDER))
	tests := map[string]struct{ in, want string }{
		"private key":   {privPEM, "private key"},
		"short rsa":     {authorizedLine(t, &small.PublicKey), "1024-bit RSA"},
		"garbage":       {strings.Repeat("x", 100), "not an OpenSSH public key"},
		"too long":      {good + " " + strings.Repeat("c", 4100), "at most 4096"},
		"too short":     {"ssh-ed25519 AAAA", "at least 80"},
		"two lines":     {good + "\n" + good, "one line"},
		"options":       {`command="/bin/sh" ` + good, "options"},
		"dsa":           {"ssh-dss " + strings.Repeat("A", 100), "DSA"},
		"bad data":      {"ssh-ed25519 " + strings.Repeat("A", 80), "does not decode"},
		"type mismatch": {"ssh-rsa " + strings.Fields(good)[1] + " comment", "does not decode"},
		"certificate":   {"ssh-ed25519-cert-v01@openssh.com " + strings.Repeat("A", 100), "certificate"},
	}
	for name, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !postern.IsKind(err, postern.KindInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, tt.want)
		}
		if name == "private key" && strings.Contains(err.Error(), "OPENSSH") {
			t.Errorf("error echoes the private key: %v", err)
		}
	}
}
