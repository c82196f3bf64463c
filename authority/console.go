package authority

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/password"
	"github.com/postern-dev/postern/totp"
)

// This file holds console sign-in: passwords (IAM login profiles), virtual
// MFA devices and the check of a sign-in attempt. Sessions and the
// brute-force limits live in package console.

// totpWindow is how many 30-second steps a code may be off, either way.
const totpWindow = 1

// maxHashing bounds the Argon2id computations running at once: each takes
// Params.Memory, and sign-in is open to anyone.
const maxHashing = 4

// MFAARN returns the serial number (ARN) of a virtual MFA device.
func (a *Authority) MFAARN(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:mfa/%s", a.cfg.Account, name)
}

func (a *Authority) passwordParams() password.Params {
	if a.cfg.PasswordParams != (password.Params{}) {
		return a.cfg.PasswordParams
	}
	return password.DefaultParams
}

// hashSlot waits for a free Argon2id slot and returns its release.
func (a *Authority) hashSlot(ctx context.Context) (func(), error) {
	select {
	case a.hashing <- struct{}{}:
		return func() { <-a.hashing }, nil
	case <-ctx.Done():
		return nil, postern.Errorf(postern.KindUnavailable, "the server is busy; try again")
	}
}

func (a *Authority) hashPassword(ctx context.Context, user, pw string) (string, error) {
	if err := password.Check(pw, user); err != nil {
		return "", postern.CodedErrorf(postern.KindInvalid, "PasswordPolicyViolation", "Password does not conform to the account password policy: %s.", err)
	}
	release, err := a.hashSlot(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	h, err := password.Hash(pw, a.passwordParams())
	if err != nil {
		return "", postern.Internal(err, "cannot hash the password")
	}
	return h, nil
}

// CreateLoginProfile gives a user a console password.
func (a *Authority) CreateLoginProfile(ctx context.Context, user, pw string) (*postern.LoginProfile, error) {
	if err := ValidateName("UserName", user, 64); err != nil {
		return nil, err
	}
	if _, err := a.store.GetUser(ctx, user); err != nil {
		return nil, err
	}
	h, err := a.hashPassword(ctx, user, pw)
	if err != nil {
		return nil, err
	}
	now := a.now().UTC()
	p := &postern.LoginProfile{UserName: user, PasswordHash: h, CreatedAt: now, UpdatedAt: now}
	if err := a.store.CreateLoginProfile(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// UpdateLoginProfile changes a user's console password; the user's
// console sessions end.
func (a *Authority) UpdateLoginProfile(ctx context.Context, user, pw string) error {
	if err := ValidateName("UserName", user, 64); err != nil {
		return err
	}
	if _, err := a.store.GetLoginProfile(ctx, user); err != nil {
		return err
	}
	h, err := a.hashPassword(ctx, user, pw)
	if err != nil {
		return err
	}
	return a.store.UpdateLoginProfile(ctx, &postern.LoginProfile{UserName: user, PasswordHash: h, UpdatedAt: a.now().UTC()})
}

// CreateVirtualMFADevice creates an unassigned TOTP device and returns it
// with its base32 seed, which is shown this once and stored only sealed.
func (a *Authority) CreateVirtualMFADevice(ctx context.Context, name string) (*postern.MFADevice, string, error) {
	if err := ValidateName("VirtualMFADeviceName", name, 226); err != nil {
		return nil, "", err
	}
	serial := a.MFAARN(name)
	seed := totp.NewSecret()
	sealed, err := a.sealer.Seal(seed, []byte(serial))
	if err != nil {
		return nil, "", postern.Internal(err, "cannot seal the MFA seed")
	}
	d := &postern.MFADevice{SerialNumber: serial, SealedSeed: sealed, CreatedAt: a.now().UTC()}
	if err := a.store.CreateMFADevice(ctx, d); err != nil {
		if postern.IsKind(err, postern.KindExists) {
			return nil, "", postern.Existsf("MFADevice entity at the same path and name already exists.")
		}
		return nil, "", err
	}
	return d, totp.EncodeSecret(seed), nil
}

func (a *Authority) mfaSeed(d *postern.MFADevice) ([]byte, error) {
	seed, err := a.sealer.Open(d.SealedSeed, []byte(d.SerialNumber))
	if err != nil {
		return nil, postern.Internal(err, "MFA device %s cannot be opened", d.SerialNumber)
	}
	return seed, nil
}

func invalidCodes() error {
	return postern.CodedErrorf(postern.KindInvalid, "InvalidAuthenticationCode", "Authentication code for device is not valid.")
}

// EnableMFADevice assigns an unassigned virtual device to user once the
// user's app has shown that it computes the device's codes: code1 current
// (Postern's short form, code2 empty), or code1 and code2 two consecutive
// codes, as IAM asks. The user's console sessions end.
func (a *Authority) EnableMFADevice(ctx context.Context, user, serial, code1, code2 string) error {
	if err := ValidateName("UserName", user, 64); err != nil {
		return err
	}
	d, err := a.store.GetMFADevice(ctx, serial)
	if err != nil {
		return err
	}
	if d.UserName != "" {
		return postern.Conflictf("MFA device %s is already in use", serial)
	}
	seed, err := a.mfaSeed(d)
	if err != nil {
		return err
	}
	now := a.now()
	step, ok := totp.Match(seed, code1, now, totpWindow)
	if !ok {
		return invalidCodes()
	}
	if code2 != "" {
		// The first code may be one step old when the second is current.
		next, ok := totp.Match(seed, code2, now, totpWindow)
		if !ok {
			return invalidCodes()
		}
		if next != step+1 {
			return invalidCodes()
		}
		step = next
	}
	return a.store.EnableMFADevice(ctx, serial, user, now.UTC(), step)
}

// DeactivateMFADevice removes a user's MFA device (it stays, unassigned,
// until DeleteVirtualMFADevice); the user's console sessions end.
func (a *Authority) DeactivateMFADevice(ctx context.Context, user, serial string) error {
	if err := ValidateName("UserName", user, 64); err != nil {
		return err
	}
	return a.store.DeactivateMFADevice(ctx, serial, user)
}

// SignInError is a failed sign-in. Message (shown to the caller) never
// says which part was wrong or whether the user exists; Reason (for the
// audit trail and logs) does.
type SignInError struct {
	MFARequired bool   // the password was right; a code is needed
	Reason      string // e.g. "wrong password"
}

func (e *SignInError) Error() string {
	if e.MFARequired {
		return "An MFA code is required for this user."
	}
	return "Your authentication information is incorrect. Please try again."
}

// SignIn checks a console sign-in: the user's password and, when the user
// has an MFA device, a code not used before. It returns the user and the
// serial of the device used ("" without MFA), or a *SignInError.
func (a *Authority) SignIn(ctx context.Context, user, pw, otp string) (*postern.User, string, error) {
	release, err := a.hashSlot(ctx)
	if err != nil {
		return nil, "", err
	}
	hash, reason := "", ""
	var u *postern.User
	if ValidateName("UserName", user, 64) != nil {
		reason = "invalid user name"
	} else if u, err = a.store.GetUser(ctx, user); err != nil {
		if !postern.IsKind(err, postern.KindNotFound) {
			release()
			return nil, "", err
		}
		reason = "no such user"
	} else if p, err := a.store.GetLoginProfile(ctx, user); err != nil {
		if !postern.IsKind(err, postern.KindNotFound) {
			release()
			return nil, "", err
		}
		reason = "no console password"
	} else {
		hash = p.PasswordHash
	}
	if hash == "" {
		// An unknown user must take as long to refuse as a wrong password.
		a.dummyOnce.Do(func() { a.dummyHash, _ = password.Hash("not a password of anyone", a.passwordParams()) })
		hash = a.dummyHash
	}
	match, err := password.Verify(pw, hash)
	release()
	if err != nil {
		return nil, "", postern.Internal(err, "the stored password of %s cannot be read", user)
	}
	if reason != "" {
		return nil, "", &SignInError{Reason: reason}
	}
	if !match {
		return nil, "", &SignInError{Reason: "wrong password"}
	}
	devices, err := a.store.ListMFADevices(ctx, user)
	if err != nil {
		return nil, "", err
	}
	if len(devices) == 0 {
		return u, "", nil
	}
	d := devices[0]
	otp = strings.TrimSpace(otp)
	if otp == "" {
		return nil, "", &SignInError{MFARequired: true, Reason: "MFA code missing"}
	}
	seed, err := a.mfaSeed(&d)
	if err != nil {
		return nil, "", err
	}
	step, ok := totp.Match(seed, otp, a.now(), totpWindow)
	if !ok {
		return nil, "", &SignInError{Reason: "wrong MFA code"}
	}
	if err := a.store.UseMFAStep(ctx, d.SerialNumber, step); err != nil {
		if postern.IsKind(err, postern.KindConflict) {
			return nil, "", &SignInError{Reason: "MFA code used before"}
		}
		return nil, "", err
	}
	return u, d.SerialNumber, nil
}

// IsSignInError reports whether err is a refused sign-in.
func IsSignInError(err error) (*SignInError, bool) {
	var se *SignInError
	ok := errors.As(err, &se)
	return se, ok
}

// SetClock replaces the authority's clock, for tests of expiry and codes.
func (a *Authority) SetClock(now func() time.Time) { a.now = now }

// Device tokens mark a browser that has signed in as a user before. The
// console counts failed sign-ins from such a browser under the token, not
// under the user name, so that someone who guesses at the name from
// elsewhere, and so locks it, does not lock the user out of browsers they
// already use (OWASP's "device cookies"). A token is sealed with the
// server's secrets key, which every replica shares.

// DeviceTokenLifetime is how long a device token is honoured.
const DeviceTokenLifetime = 90 * 24 * time.Hour

// deviceAD binds sealed device tokens to their use.
var deviceAD = []byte("postern-console-device-v1")

// DeviceToken returns a new device token for user, issued at now.
func (a *Authority) DeviceToken(user string, now time.Time) (string, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	plain := hex.EncodeToString(id) + "\n" + strconv.FormatInt(now.Unix(), 10) + "\n" + user
	sealed, err := a.sealer.Seal([]byte(plain), deviceAD)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// CheckDeviceToken returns the id of token when it is a device token of
// user that has not outlived DeviceTokenLifetime at now.
func (a *Authority) CheckDeviceToken(token, user string, now time.Time) (string, bool) {
	if token == "" || len(token) > 512 {
		return "", false
	}
	sealed, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", false
	}
	plain, err := a.sealer.Open(sealed, deviceAD)
	if err != nil {
		return "", false
	}
	id, rest, _ := strings.Cut(string(plain), "\n")
	issued, name, _ := strings.Cut(rest, "\n")
	at, err := strconv.ParseInt(issued, 10, 64)
	if err != nil || name != user || len(id) != 32 {
		return "", false
	}
	if age := now.Sub(time.Unix(at, 0)); age < -time.Minute || age > DeviceTokenLifetime {
		return "", false
	}
	return id, true
}
