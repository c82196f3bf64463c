package password

import (
	"strings"
	"testing"
)

// cheap keeps the tests fast; the format and the comparison are the same.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("hash %q is not a PHC argon2id string with its parameters", h)
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("the hash contains the password")
	}
	if ok, err := Verify("correct horse battery", h); !ok || err != nil {
		t.Errorf("Verify(right) = %v, %v", ok, err)
	}
	if ok, err := Verify("correct horse batterY", h); ok || err != nil {
		t.Errorf("Verify(wrong) = %v, %v", ok, err)
	}
	h2, _ := Hash("correct horse battery", cheap)
	if h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestDefaultParamsRecorded(t *testing.T) {
	h, err := Hash("a long enough passphrase", DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("hash %q does not record the default parameters", h)
	}
	if ok, _ := Verify("a long enough passphrase", h); !ok {
		t.Error("Verify failed with the default parameters")
	}
}

func TestVerifyMalformed(t *testing.T) {
	for _, h := range []string{
		"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		if ok, err := Verify("x", h); ok || err == nil {
			t.Errorf("Verify(%q) = %v, %v; want an error", h, ok, err)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, pw := range []string{"Tr0ub4dor&3xyz", "correct horse battery staple", "mauve-otter-17-kettle"} {
		if err := Check(pw, "alice"); err != nil {
			t.Errorf("Check(%q) = %v; want it accepted", pw, err)
		}
	}
	for pw, why := range map[string]string{
		"short":               "at least 12",
		"aaaaaaaaaaaaaa":      "repetitive",
		"abababababab":        "repetitive",
		"123456789012":        "sequence",
		"zyxwvutsrqpo":        "sequence",
		"password1234":        "too common",
		"Qwertyuiop12":        "too common",
		"alice-is-great-2024": "user name",
		strings.Repeat("x", 12) + strings.Repeat("yzabc", 30): "at most 128",
	} {
		err := Check(pw, "alice")
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("Check(%.20q…) = %v; want an error saying %q", pw, err, why)
		}
	}
}
