package keyrecord

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func TestSignVerifyCheck(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r := Record{InstanceID: "i-0123456789abcdef0", OSUser: "alice", Key: "ssh-ed25519 AAAA", Fingerprint: "SHA256:abc",
		RequestID: "req-1", Caller: "arn:aws:iam::123456789012:user/alice", IssuedAt: now, ExpiresAt: now.Add(60 * time.Second)}
	s, err := Sign(r, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Verify(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Fatalf("round trip: %+v != %+v", got, r)
	}
	if err := got.Check("i-0123456789abcdef0", "alice", "SHA256:abc", now.Add(59*time.Second)); err != nil {
		t.Errorf("valid record refused: %v", err)
	}
	if err := got.Check("i-0123456789abcdef0", "alice", "", now); err != nil {
		t.Errorf("no fingerprint given: %v", err)
	}
	checks := map[string]struct {
		instance, user, fp string
		at                 time.Time
		want               error
	}{
		"other instance":  {"i-0fffffffffffffff0", "alice", "", now, ErrInstance},
		"other user":      {"i-0123456789abcdef0", "bob", "", now, ErrUser},
		"other key":       {"i-0123456789abcdef0", "alice", "SHA256:zzz", now, ErrKey},
		"expired":         {"i-0123456789abcdef0", "alice", "", now.Add(60 * time.Second), ErrExpired},
		"from the future": {"i-0123456789abcdef0", "alice", "", now.Add(-10 * time.Minute), ErrNotYet},
	}
	for name, c := range checks {
		if err := got.Check(c.instance, c.user, c.fp, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}

	// Altered in transit: any byte of the payload, or another signer.
	for i := range s.Payload {
		bad := Signed{Payload: append([]byte(nil), s.Payload...), Signature: s.Signature}
		bad.Payload[i] ^= 0x01
		if _, err := bad.Verify(pub); !errors.Is(err, ErrSignature) {
			t.Fatalf("payload byte %d flipped: err = %v", i, err)
		}
	}
	forged, _ := Sign(r, otherPriv)
	if _, err := forged.Verify(pub); !errors.Is(err, ErrSignature) {
		t.Errorf("record signed by another key: err = %v", err)
	}
	if _, err := s.Verify(otherPub); !errors.Is(err, ErrSignature) {
		t.Errorf("verified under the wrong pinned key: err = %v", err)
	}
	if _, err := s.Verify(nil); !errors.Is(err, ErrSignature) {
		t.Errorf("verified with no pinned key: err = %v", err)
	}
}

func TestClaimsAreUnverified(t *testing.T) {
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r := Record{InstanceID: "i-0123456789abcdef0", OSUser: "alice", Key: "ssh-ed25519 AAAA", Fingerprint: "SHA256:abc",
		IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	forged, err := Sign(r, forger)
	if err != nil {
		t.Fatal(err)
	}
	// Claims reads what a forged record says; only Verify tells it apart.
	got, err := forged.Claims()
	if err != nil || got != r {
		t.Fatalf("Claims = %+v, %v; want %+v", got, err, r)
	}
	if _, err := (Signed{Payload: []byte("{not json"), Signature: forged.Signature}).Claims(); err == nil {
		t.Error("Claims decoded garbage")
	}
}
