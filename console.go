package postern

import "time"

// LoginProfile is a user's console password (IAM's login profile). Only a
// PHC-format Argon2id hash is stored (package password).
type LoginProfile struct {
	UserName     string
	PasswordHash string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// MFADevice is a virtual (TOTP) MFA device. It is created unassigned
// (UserName empty) and assigned to a user by EnableMFADevice once the user
// has proven that their app computes its codes. The seed is stored only
// sealed, bound to SerialNumber.
type MFADevice struct {
	SerialNumber string // arn:aws:iam::<account>:mfa/<name>
	UserName     string // "" while unassigned
	SealedSeed   []byte
	CreatedAt    time.Time
	EnabledAt    time.Time // zero while unassigned
	// LastUsedStep is the newest TOTP time step accepted, so that each
	// code works once.
	LastUsedStep int64
}

// ConsoleSession is a signed-in console session. Only the SHA-256 of the
// cookie's random id is stored.
type ConsoleSession struct {
	IDHash    []byte
	UserName  string
	MFA       bool // signed in with a second factor
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time // absolute end, whatever the activity
	SourceIP  string
	UserAgent string
}

// SignInFailure is the count of failed console sign-ins under one key and
// the time of the last.
type SignInFailure struct {
	Count int
	Last  time.Time
}
