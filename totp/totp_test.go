package totp

import (
	"strings"
	"testing"
	"time"
)

// TestRFC6238Vectors checks the SHA-1 vectors of RFC 6238, appendix B
// (eight digits there; the six-digit codes are their last six).
func TestRFC6238Vectors(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, v := range []struct {
		unix int64
		want string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	} {
		step := Step(time.Unix(v.unix, 0))
		if got := hotp(secret, uint64(step), 8); got != v.want {
			t.Errorf("T=%d: 8-digit code %s, want %s", v.unix, got, v.want)
		}
		if got := At(secret, time.Unix(v.unix, 0)); got != v.want[2:] {
			t.Errorf("T=%d: code %s, want %s", v.unix, got, v.want[2:])
		}
	}
}

func TestMatchWindow(t *testing.T) {
	secret := NewSecret()
	now := time.Unix(1_700_000_000, 0)
	step := Step(now)
	for d := int64(-1); d <= 1; d++ {
		got, ok := Match(secret, Code(secret, step+d), now, 1)
		if !ok || got != step+d {
			t.Errorf("code of step %+d: Match = %d, %v; want %d, true", d, got, ok, step+d)
		}
	}
	for _, d := range []int64{-2, 2, 100} {
		if _, ok := Match(secret, Code(secret, step+d), now, 1); ok {
			t.Errorf("code of step %+d matched with a window of 1", d)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := Match(secret, bad, now, 1); ok {
			t.Errorf("Match(%q) = true", bad)
		}
	}
}

func TestURIAndSecretRoundTrip(t *testing.T) {
	secret := NewSecret()
	u := URI("Postern", "alice", secret)
	want := "otpauth://totp/Postern:alice?secret=" + EncodeSecret(secret) + "&issuer=Postern"
	if u != want {
		t.Errorf("URI = %q, want %q", u, want)
	}
	enc := EncodeSecret(secret)
	if strings.Contains(enc, "=") {
		t.Errorf("encoded secret %q is padded", enc)
	}
	back, err := DecodeSecret(strings.ToLower(enc))
	if err != nil || string(back) != string(secret) {
		t.Errorf("DecodeSecret(lowercase) = %x, %v; want %x", back, err, secret)
	}
	if _, err := DecodeSecret("not base32!"); err == nil {
		t.Error("DecodeSecret accepted garbage")
	}
}
