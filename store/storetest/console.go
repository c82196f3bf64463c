package storetest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

func createSession(t *testing.T, s postern.Store, id, user string, created time.Time) *postern.ConsoleSession {
	t.Helper()
	cs := &postern.ConsoleSession{
		IDHash: []byte("hash:" + id), UserName: user, MFA: id == "mfa",
		CreatedAt: created, LastSeen: created, ExpiresAt: created.Add(12 * time.Hour),
		SourceIP: "192.0.2.7", UserAgent: "storetest",
	}
	ok(t, s.CreateConsoleSession(t.Context(), cs), "CreateConsoleSession "+id)
	return cs
}

// live reports whether the session with id still works at when.
func live(t *testing.T, s postern.Store, id string, when time.Time) bool {
	t.Helper()
	_, err := s.TouchConsoleSession(t.Context(), []byte("hash:"+id), when, when.Add(-time.Hour))
	if err != nil && !postern.IsKind(err, postern.KindNotFound) {
		t.Fatalf("TouchConsoleSession %s: %v", id, err)
	}
	return err == nil
}

func testLoginProfiles(t *testing.T, s postern.Store) {
	ctx := t.Context()
	p := &postern.LoginProfile{UserName: "alice", PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA", CreatedAt: stamp(1), UpdatedAt: stamp(1)}
	wantKind(t, s.CreateLoginProfile(ctx, p), postern.KindNotFound, "CreateLoginProfile of a missing user", "alice")
	createUser(t, s, "alice")
	_, err := s.GetLoginProfile(ctx, "alice")
	wantKind(t, err, postern.KindNotFound, "GetLoginProfile before one exists", "alice")
	wantKind(t, s.UpdateLoginProfile(ctx, p), postern.KindNotFound, "UpdateLoginProfile before one exists", "alice")
	wantKind(t, s.DeleteLoginProfile(ctx, "alice"), postern.KindNotFound, "DeleteLoginProfile before one exists", "alice")

	ok(t, s.CreateLoginProfile(ctx, p), "CreateLoginProfile")
	wantKind(t, s.CreateLoginProfile(ctx, p), postern.KindExists, "CreateLoginProfile twice", "alice")
	got, err := s.GetLoginProfile(ctx, "alice")
	ok(t, err, "GetLoginProfile")
	if got.UserName != "alice" || got.PasswordHash != p.PasswordHash {
		t.Errorf("GetLoginProfile = %+v, want %+v", got, p)
	}
	sameTime(t, "login profile CreatedAt", got.CreatedAt, p.CreatedAt)

	ok(t, s.UpdateLoginProfile(ctx, &postern.LoginProfile{UserName: "alice", PasswordHash: "$new", UpdatedAt: stamp(9)}), "UpdateLoginProfile")
	got, err = s.GetLoginProfile(ctx, "alice")
	ok(t, err, "GetLoginProfile after the update")
	if got.PasswordHash != "$new" {
		t.Errorf("after UpdateLoginProfile the hash is %q, want $new", got.PasswordHash)
	}
	sameTime(t, "login profile CreatedAt after the update", got.CreatedAt, p.CreatedAt)
	sameTime(t, "login profile UpdatedAt", got.UpdatedAt, stamp(9))

	ok(t, s.DeleteLoginProfile(ctx, "alice"), "DeleteLoginProfile")
	_, err = s.GetLoginProfile(ctx, "alice")
	wantKind(t, err, postern.KindNotFound, "GetLoginProfile after the delete", "alice")
}

const serialA, serialB = "arn:aws:iam::123456789012:mfa/a", "arn:aws:iam::123456789012:mfa/b"

func createMFA(t *testing.T, s postern.Store, serial string) *postern.MFADevice {
	t.Helper()
	d := &postern.MFADevice{SerialNumber: serial, SealedSeed: []byte("sealed:" + serial), CreatedAt: stamp(2)}
	ok(t, s.CreateMFADevice(t.Context(), d), "CreateMFADevice "+serial)
	return d
}

func testMFADevices(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createUser(t, s, "alice")
	createUser(t, s, "bob")
	_, err := s.GetMFADevice(ctx, serialA)
	wantKind(t, err, postern.KindNotFound, "GetMFADevice of a missing device", serialA)
	a := createMFA(t, s, serialA)
	createMFA(t, s, serialB)
	wantKind(t, s.CreateMFADevice(ctx, a), postern.KindExists, "CreateMFADevice twice", serialA)

	got, err := s.GetMFADevice(ctx, serialA)
	ok(t, err, "GetMFADevice")
	if got.UserName != "" || !bytes.Equal(got.SealedSeed, a.SealedSeed) || !got.EnabledAt.IsZero() {
		t.Errorf("new device = %+v; want unassigned with its seed", got)
	}
	sameTime(t, "MFA CreatedAt", got.CreatedAt, a.CreatedAt)

	_, err = s.ListMFADevices(ctx, "nobody")
	wantKind(t, err, postern.KindNotFound, "ListMFADevices of a missing user", "nobody")
	wantKind(t, s.EnableMFADevice(ctx, serialA, "nobody", stamp(3), 10), postern.KindNotFound, "EnableMFADevice for a missing user", "nobody")
	wantKind(t, s.EnableMFADevice(ctx, "arn:aws:iam::123456789012:mfa/x", "alice", stamp(3), 10), postern.KindNotFound, "EnableMFADevice of a missing device", "mfa/x")
	ok(t, s.EnableMFADevice(ctx, serialA, "alice", stamp(3), 10), "EnableMFADevice")
	wantKind(t, s.EnableMFADevice(ctx, serialA, "bob", stamp(3), 10), postern.KindConflict, "EnableMFADevice of an assigned device", serialA)
	wantKind(t, s.EnableMFADevice(ctx, serialB, "alice", stamp(3), 10), postern.KindConflict, "a second device for alice", "alice")
	ds, err := s.ListMFADevices(ctx, "alice")
	ok(t, err, "ListMFADevices")
	if len(ds) != 1 || ds[0].SerialNumber != serialA || ds[0].UserName != "alice" || ds[0].LastUsedStep != 10 {
		t.Fatalf("ListMFADevices(alice) = %+v; want %s assigned with step 10", ds, serialA)
	}
	sameTime(t, "MFA EnabledAt", ds[0].EnabledAt, stamp(3))
	if ds, _ := s.ListMFADevices(ctx, "bob"); len(ds) != 0 {
		t.Errorf("ListMFADevices(bob) = %+v, want none", ds)
	}

	// Each step once, and never an older one.
	wantKind(t, s.UseMFAStep(ctx, serialA, 10), postern.KindConflict, "UseMFAStep of the enabling step", "used")
	ok(t, s.UseMFAStep(ctx, serialA, 11), "UseMFAStep 11")
	wantKind(t, s.UseMFAStep(ctx, serialA, 11), postern.KindConflict, "UseMFAStep 11 again", "used")
	wantKind(t, s.UseMFAStep(ctx, serialA, 9), postern.KindConflict, "UseMFAStep of an older step", "used")
	wantKind(t, s.UseMFAStep(ctx, "arn:aws:iam::123456789012:mfa/x", 1), postern.KindNotFound, "UseMFAStep of a missing device", "mfa/x")

	wantKind(t, s.DeleteMFADevice(ctx, serialA), postern.KindConflict, "DeleteMFADevice of an assigned device", "alice")
	wantKind(t, s.DeactivateMFADevice(ctx, serialA, "bob"), postern.KindNotFound, "DeactivateMFADevice for the wrong user", serialA)
	ok(t, s.DeactivateMFADevice(ctx, serialA, "alice"), "DeactivateMFADevice")
	if ds, _ := s.ListMFADevices(ctx, "alice"); len(ds) != 0 {
		t.Errorf("after DeactivateMFADevice, ListMFADevices(alice) = %+v", ds)
	}
	ok(t, s.DeleteMFADevice(ctx, serialA), "DeleteMFADevice")
	wantKind(t, s.DeleteMFADevice(ctx, serialA), postern.KindNotFound, "DeleteMFADevice twice", serialA)
	// A user without a device can enable another.
	ok(t, s.EnableMFADevice(ctx, serialB, "alice", stamp(4), 1), "EnableMFADevice of a second device")
}

// testMFAStepConcurrent: of many sign-ins presenting one code at once,
// exactly one may use it.
func testMFAStepConcurrent(t *testing.T, s postern.Store) {
	createUser(t, s, "alice")
	createMFA(t, s, serialA)
	ok(t, s.EnableMFADevice(t.Context(), serialA, "alice", stamp(3), 100), "EnableMFADevice")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			err := s.UseMFAStep(t.Context(), serialA, 101)
			switch {
			case err == nil:
				wins.Add(1)
			case !postern.IsKind(err, postern.KindConflict):
				t.Errorf("UseMFAStep: %v", err)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d of 16 concurrent uses of one step succeeded, want 1", n)
	}
}

func testConsoleSessions(t *testing.T, s postern.Store) {
	ctx := t.Context()
	t0 := stamp(0)
	wantKind(t, s.CreateConsoleSession(ctx, &postern.ConsoleSession{IDHash: []byte("x"), UserName: "nobody", ExpiresAt: t0.Add(time.Hour)}),
		postern.KindNotFound, "CreateConsoleSession for a missing user", "nobody")
	createUser(t, s, "alice")
	want := createSession(t, s, "mfa", "alice", t0)
	got, err := s.TouchConsoleSession(ctx, want.IDHash, t0.Add(time.Minute), t0.Add(-time.Hour))
	ok(t, err, "TouchConsoleSession")
	if got.UserName != "alice" || !got.MFA || got.SourceIP != want.SourceIP || got.UserAgent != want.UserAgent || !bytes.Equal(got.IDHash, want.IDHash) {
		t.Errorf("TouchConsoleSession = %+v, want %+v", got, want)
	}
	sameTime(t, "session LastSeen (as it was before the touch)", got.LastSeen, t0)
	sameTime(t, "session ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	got, err = s.TouchConsoleSession(ctx, want.IDHash, t0.Add(2*time.Minute), t0.Add(-time.Hour))
	ok(t, err, "second TouchConsoleSession")
	sameTime(t, "session LastSeen after a touch", got.LastSeen, t0.Add(time.Minute))

	_, err = s.TouchConsoleSession(ctx, []byte("hash:unknown"), t0, t0)
	wantKind(t, err, postern.KindNotFound, "TouchConsoleSession of an unknown id", "session")

	// Idle: last seen at +2m, cutoff later than that.
	createSession(t, s, "idle", "alice", t0)
	ok(t, func() error {
		_, err := s.TouchConsoleSession(ctx, []byte("hash:idle"), t0.Add(time.Minute), t0)
		return err
	}(), "touch idle")
	_, err = s.TouchConsoleSession(ctx, []byte("hash:idle"), t0.Add(3*time.Hour), t0.Add(2*time.Hour))
	wantKind(t, err, postern.KindNotFound, "TouchConsoleSession of an idle session", "session")
	_, err = s.TouchConsoleSession(ctx, []byte("hash:idle"), t0.Add(time.Minute), t0)
	wantKind(t, err, postern.KindNotFound, "an idle session stays ended", "session")

	// Absolute expiry, however active.
	createSession(t, s, "old", "alice", t0)
	_, err = s.TouchConsoleSession(ctx, []byte("hash:old"), t0.Add(12*time.Hour), t0.Add(11*time.Hour))
	wantKind(t, err, postern.KindNotFound, "TouchConsoleSession at ExpiresAt", "session")

	ok(t, s.DeleteConsoleSession(ctx, want.IDHash), "DeleteConsoleSession")
	ok(t, s.DeleteConsoleSession(ctx, want.IDHash), "DeleteConsoleSession twice")
	if live(t, s, "mfa", t0.Add(3*time.Minute)) {
		t.Error("a deleted session still works")
	}
}

// testConsoleSessionsEnd: changing a user's password or MFA ends every
// session of that user and no other.
func testConsoleSessionsEnd(t *testing.T, s postern.Store) {
	ctx := t.Context()
	t0 := stamp(0)
	at := t0.Add(time.Minute)
	createUser(t, s, "alice")
	createUser(t, s, "bob")
	p := &postern.LoginProfile{UserName: "alice", PasswordHash: "$h1", CreatedAt: t0}
	for _, step := range []struct {
		what   string
		change func() error
	}{
		{"CreateLoginProfile", func() error { return s.CreateLoginProfile(ctx, p) }},
		{"UpdateLoginProfile", func() error {
			return s.UpdateLoginProfile(ctx, &postern.LoginProfile{UserName: "alice", PasswordHash: "$h2"})
		}},
		{"EnableMFADevice", func() error {
			createMFA(t, s, serialA)
			return s.EnableMFADevice(ctx, serialA, "alice", t0, 1)
		}},
		{"DeactivateMFADevice", func() error { return s.DeactivateMFADevice(ctx, serialA, "alice") }},
		{"DeleteLoginProfile", func() error { return s.DeleteLoginProfile(ctx, "alice") }},
	} {
		createSession(t, s, "alice-1", "alice", t0)
		createSession(t, s, "alice-2", "alice", t0)
		createSession(t, s, "bob", "bob", t0)
		ok(t, step.change(), step.what)
		if live(t, s, "alice-1", at) || live(t, s, "alice-2", at) {
			t.Errorf("after %s, alice's sessions still work", step.what)
		}
		if !live(t, s, "bob", at) {
			t.Errorf("after %s of alice, bob's session ended", step.what)
		}
		ok(t, s.DeleteConsoleSession(ctx, []byte("hash:bob")), "DeleteConsoleSession bob")
	}
	createSession(t, s, "bob", "bob", t0)
	ok(t, s.DeleteUser(ctx, "bob"), "DeleteUser bob")
	if live(t, s, "bob", at) {
		t.Error("the session of a deleted user still works")
	}
}

func testDeleteUserConsoleConflicts(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createUser(t, s, "alice")
	ok(t, s.CreateLoginProfile(ctx, &postern.LoginProfile{UserName: "alice", PasswordHash: "$h"}), "CreateLoginProfile")
	wantKind(t, s.DeleteUser(ctx, "alice"), postern.KindConflict, "DeleteUser with a login profile", "login profile")
	ok(t, s.DeleteLoginProfile(ctx, "alice"), "DeleteLoginProfile")
	createMFA(t, s, serialA)
	ok(t, s.EnableMFADevice(ctx, serialA, "alice", stamp(1), 1), "EnableMFADevice")
	wantKind(t, s.DeleteUser(ctx, "alice"), postern.KindConflict, "DeleteUser with an MFA device", "MFA")
	ok(t, s.DeactivateMFADevice(ctx, serialA, "alice"), "DeactivateMFADevice")
	ok(t, s.DeleteUser(ctx, "alice"), "DeleteUser")
}

// testSignInFailures: attempts count per key up to each key's limit,
// concurrent ones included, a refused reservation changes nothing, old
// counts are forgotten, and release and reset take counts back.
func testSignInFailures(t *testing.T, s postern.Store) {
	ctx := t.Context()
	keys := []string{"user:alice", "ip:192.0.2.7"}
	limits := []int{5, 20}
	got, err := s.SignInFailures(ctx, keys, stamp(0))
	ok(t, err, "SignInFailures of nothing")
	if len(got) != 0 {
		t.Errorf("failures before any: %v", got)
	}
	reserved, err := s.ReserveSignInAttempt(ctx, keys, limits, stamp(10), stamp(0))
	ok(t, err, "ReserveSignInAttempt")
	if !reserved {
		t.Fatal("the first attempt was not counted")
	}
	// Concurrent attempts count one after the other, up to the limit.
	const concurrent = 8
	results := make(chan error, concurrent)
	var counted atomic.Int32
	for range concurrent {
		go func() {
			r, err := s.ReserveSignInAttempt(ctx, []string{"user:alice"}, []int{5}, stamp(20), stamp(0))
			if r {
				counted.Add(1)
			}
			results <- err
		}()
	}
	for range concurrent {
		ok(t, <-results, "concurrent ReserveSignInAttempt")
	}
	if counted.Load() != 4 {
		t.Errorf("%d of %d concurrent attempts were counted after the first; the limit of 5 leaves room for 4", counted.Load(), concurrent)
	}
	got, err = s.SignInFailures(ctx, append(keys, "user:bob"), stamp(0))
	ok(t, err, "SignInFailures")
	if got["user:alice"].Count != 5 || got["ip:192.0.2.7"].Count != 1 || len(got) != 2 {
		t.Errorf("failures = %v, want alice 5 and the address 1", got)
	}
	sameTime(t, "alice's last failure", got["user:alice"].Last, stamp(20))

	// A key at its limit refuses the reservation, and the others are
	// not counted either.
	reserved, err = s.ReserveSignInAttempt(ctx, []string{"ip:192.0.2.7", "user:alice"}, []int{20, 5}, stamp(25), stamp(0))
	ok(t, err, "ReserveSignInAttempt at the limit")
	got, err = s.SignInFailures(ctx, keys, stamp(0))
	ok(t, err, "SignInFailures")
	if reserved || got["user:alice"].Count != 5 || got["ip:192.0.2.7"].Count != 1 {
		t.Errorf("an attempt past alice's limit: counted %v, failures %v; want nothing changed", reserved, got)
	}
	sameTime(t, "alice's last failure after a refused attempt", got["user:alice"].Last, stamp(20))

	// Counts whose last failure is older than since do not show, and
	// start again from one.
	got, err = s.SignInFailures(ctx, keys, stamp(15))
	ok(t, err, "SignInFailures since 15")
	if _, old := got["ip:192.0.2.7"]; old || got["user:alice"].Count != 5 {
		t.Errorf("failures since 15 = %v, want alice only", got)
	}
	_, err = s.ReserveSignInAttempt(ctx, []string{"ip:192.0.2.7"}, []int{20}, stamp(30), stamp(15))
	ok(t, err, "ReserveSignInAttempt after decay")
	got, err = s.SignInFailures(ctx, keys, stamp(15))
	ok(t, err, "SignInFailures")
	if got["ip:192.0.2.7"].Count != 1 {
		t.Errorf("a decayed count restarted at %d, want 1", got["ip:192.0.2.7"].Count)
	}

	// Release takes one back; a count released to zero is gone.
	ok(t, s.ReleaseSignInAttempt(ctx, append(keys, "user:nobody")), "ReleaseSignInAttempt")
	got, err = s.SignInFailures(ctx, keys, stamp(0))
	ok(t, err, "SignInFailures after release")
	if _, still := got["ip:192.0.2.7"]; still || got["user:alice"].Count != 4 {
		t.Errorf("after a release: %v, want alice 4 and no address", got)
	}

	ok(t, s.ResetSignInFailures(ctx, "user:alice"), "ResetSignInFailures")
	ok(t, s.ResetSignInFailures(ctx, "user:nobody"), "ResetSignInFailures of an unknown key")
	got, err = s.SignInFailures(ctx, keys, stamp(0))
	ok(t, err, "SignInFailures after reset")
	if len(got) != 0 {
		t.Errorf("after resetting alice: %v", got)
	}
}
