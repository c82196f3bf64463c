package authority

import (
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/password"
	"github.com/postern-dev/postern/store/sqlite/sqlitetest"
	"github.com/postern-dev/postern/totp"
)

func newTestAuthority(t *testing.T) *Authority {
	t.Helper()
	st, sealer := sqlitetest.Open(t)
	cheap := password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	return New(Config{Region: "us-east-1", Account: "123456789012", PasswordParams: cheap}, st, sealer, nil)
}

// TestEnableMFADeviceCodes: one current code, or two consecutive ones.
func TestEnableMFADeviceCodes(t *testing.T) {
	a := newTestAuthority(t)
	ctx := t.Context()
	now := time.Unix(1_800_000_000, 0)
	a.now = func() time.Time { return now }
	for _, u := range []string{"alice", "bob", "carol"} {
		if _, err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	device := func(name string) (*postern.MFADevice, []byte) {
		d, seed, err := a.CreateVirtualMFADevice(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := totp.DecodeSecret(seed)
		if err != nil {
			t.Fatal(err)
		}
		return d, b
	}
	step := totp.Step(now)

	d, seed := device("alice")
	for _, codes := range [][2]string{
		{totp.Code(seed, step+2), ""},                      // outside the window
		{totp.Code(seed, step), totp.Code(seed, step)},     // not consecutive
		{totp.Code(seed, step), totp.Code(seed, step-1)},   // backwards
		{totp.Code(seed, step-1), totp.Code(seed, step+1)}, // a gap
		{totp.Code(seed, step+1), totp.Code(seed, step+2)}, // the second beyond the window
	} {
		if err := a.EnableMFADevice(ctx, "alice", d.SerialNumber, codes[0], codes[1]); !postern.IsKind(err, postern.KindInvalid) {
			t.Errorf("codes %v: EnableMFADevice = %v, want InvalidAuthenticationCode", codes, err)
		}
	}
	if err := a.EnableMFADevice(ctx, "alice", d.SerialNumber, totp.Code(seed, step-1), totp.Code(seed, step)); err != nil {
		t.Fatalf("two consecutive codes: %v", err)
	}
	if _, _, err := a.CreateVirtualMFADevice(ctx, "alice"); !postern.IsKind(err, postern.KindExists) {
		t.Errorf("a second device of that name: %v, want KindExists", err)
	}

	d, seed = device("bob")
	if err := a.EnableMFADevice(ctx, "bob", d.SerialNumber, totp.Code(seed, step), ""); err != nil {
		t.Fatalf("one current code: %v", err)
	}
	// The enabling step is spent.
	_, _, err := a.SignIn(ctx, "bob", "x", totp.Code(seed, step))
	if _, ok := IsSignInError(err); !ok {
		t.Errorf("SignIn without a password = %v, want a SignInError", err)
	}

	// A sealed seed is bound to its serial number.
	d, _ = device("carol")
	other, _ := a.store.GetMFADevice(ctx, a.MFAARN("alice"))
	d.SealedSeed = other.SealedSeed
	if _, err := a.mfaSeed(d); err == nil {
		t.Error("alice's sealed seed opened as carol's")
	}
}

// TestSignInReasons: the caller sees one message; the reason differs.
func TestSignInReasons(t *testing.T) {
	a := newTestAuthority(t)
	ctx := t.Context()
	if _, err := a.CreateUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateUser(ctx, "nopass"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateLoginProfile(ctx, "alice", "plum cedar ridge 4410"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateLoginProfile(ctx, "alice", "plum cedar ridge 4410"); !postern.IsKind(err, postern.KindExists) {
		t.Errorf("second CreateLoginProfile = %v, want KindExists", err)
	}
	if _, err := a.CreateLoginProfile(ctx, "nopass", "short"); !postern.IsKind(err, postern.KindInvalid) {
		t.Errorf("weak password = %v, want KindInvalid", err)
	}
	if err := a.UpdateLoginProfile(ctx, "nopass", "plum cedar ridge 4410"); !postern.IsKind(err, postern.KindNotFound) {
		t.Errorf("UpdateLoginProfile without a profile = %v, want KindNotFound", err)
	}
	var msg string
	for user, reason := range map[string]string{
		"alice": "wrong password", "nobody": "no such user", "nopass": "no console password", "bad/name": "invalid user name",
	} {
		_, _, err := a.SignIn(ctx, user, "wrong guess here", "")
		se, ok := IsSignInError(err)
		if !ok || se.Reason != reason {
			t.Errorf("SignIn(%s) = %v, want reason %q", user, err, reason)
			continue
		}
		if msg == "" {
			msg = se.Error()
		} else if se.Error() != msg {
			t.Errorf("SignIn(%s) says %q, others %q", user, se.Error(), msg)
		}
	}
	u, serial, err := a.SignIn(ctx, "alice", "plum cedar ridge 4410", "")
	if err != nil || u.Name != "alice" || serial != "" {
		t.Errorf("SignIn(right) = %v, %q, %v", u, serial, err)
	}
}
