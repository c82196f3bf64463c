package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/keyrecord"
	"github.com/postern-dev/postern/sshkey"
)

const testInstance = "i-0123456789abcdef0"

type helperFixture struct {
	ksk     ed25519.PrivateKey
	keys    *keyStore
	cfg     HelperConfig
	now     time.Time
	userKey *sshkey.Key
}

func newHelperFixture(t *testing.T) *helperFixture {
	t.Helper()
	kskPub, ksk, _ := ed25519.GenerateKey(rand.Reader)
	f := &helperFixture{ksk: ksk, now: time.Now()}
	f.keys = newKeyStore(testInstance, kskPub, func() time.Time { return f.now })
	sock := filepath.Join(t.TempDir(), "agent.sock")
	srv := &socketServer{path: sock, helperUID: -1, helperGID: -1, keys: f.keys, log: slog.New(slog.DiscardHandler)}
	l, err := srv.listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	f.cfg = HelperConfig{InstanceID: testInstance, KeySigningKey: kskPub, Socket: sock}
	f.userKey = newUserKey(t)
	return f
}

func newUserKey(t *testing.T) *sshkey.Key {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	k, err := sshkey.Parse(string(ssh.MarshalAuthorizedKey(sp)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (f *helperFixture) record(user string, k *sshkey.Key, ttl time.Duration) keyrecord.Record {
	return keyrecord.Record{InstanceID: testInstance, OSUser: user, Key: k.Line, Fingerprint: k.Fingerprint,
		RequestID: "req", Caller: "arn:aws:iam::123456789012:user/alice", IssuedAt: f.now, ExpiresAt: f.now.Add(ttl)}
}

func (f *helperFixture) push(t *testing.T, r keyrecord.Record, signer ed25519.PrivateKey) error {
	t.Helper()
	s, err := keyrecord.Sign(r, signer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.keys.add(s)
	return err
}

func TestHelperPrintsOnlyValidKeysForThatUser(t *testing.T) {
	f := newHelperFixture(t)
	second := newUserKey(t)
	if err := f.push(t, f.record("alice", f.userKey, time.Minute), f.ksk); err != nil {
		t.Fatal(err)
	}
	if err := f.push(t, f.record("alice", second, 30*time.Second), f.ksk); err != nil {
		t.Fatal(err)
	}
	if err := f.push(t, f.record("bob", newUserKey(t), time.Minute), f.ksk); err != nil {
		t.Fatal(err)
	}
	keys, rejected, err := AuthorizedKeys(f.cfg, "alice", "", f.now, time.Second)
	if err != nil || len(rejected) != 0 {
		t.Fatalf("err %v, rejected %v", err, rejected)
	}
	if len(keys) != 2 {
		t.Fatalf("alice has %d keys, want 2 (each push lives on its own)", len(keys))
	}
	want := `expiry-time="` + f.now.Add(time.Minute).UTC().Format("20060102150405") + `Z" ` + f.userKey.Line
	if keys[0].Line != want {
		t.Errorf("line = %q, want %q", keys[0].Line, want)
	}
	// sshd passes the offered key's fingerprint: only that key is printed.
	keys, _, _ = AuthorizedKeys(f.cfg, "alice", second.Fingerprint, f.now, time.Second)
	if len(keys) != 1 || !strings.HasSuffix(keys[0].Line, second.Line) {
		t.Errorf("fingerprint filter: %v", keys)
	}
	// A key pushed for alice does not open bob.
	keys, _, _ = AuthorizedKeys(f.cfg, "bob", f.userKey.Fingerprint, f.now, time.Second)
	if len(keys) != 0 {
		t.Errorf("alice's key opened bob: %v", keys)
	}
	// Each key expires on its own; memory keeps nothing stale.
	f.now = f.now.Add(45 * time.Second)
	keys, _, _ = AuthorizedKeys(f.cfg, "alice", "", f.now, time.Second)
	if len(keys) != 1 || !strings.HasSuffix(keys[0].Line, f.userKey.Line) {
		t.Errorf("after 45 s: %v", keys)
	}
	f.now = f.now.Add(time.Minute)
	if keys, _, _ = AuthorizedKeys(f.cfg, "alice", "", f.now, time.Second); len(keys) != 0 {
		t.Errorf("expired keys still printed: %v", keys)
	}
	if n := f.keys.size(); n != 0 {
		t.Errorf("%d expired records kept in memory", n)
	}
}

func TestAgentRefusesBadPushes(t *testing.T) {
	f := newHelperFixture(t)
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	other := f.record("alice", f.userKey, time.Minute)
	other.InstanceID = "i-0fffffffffffffff0"
	cases := map[string]struct {
		r      keyrecord.Record
		signer ed25519.PrivateKey
		want   error
	}{
		"forged":          {f.record("alice", f.userKey, time.Minute), forger, keyrecord.ErrSignature},
		"other instance":  {other, f.ksk, keyrecord.ErrInstance},
		"already expired": {f.record("alice", f.userKey, -time.Second), f.ksk, keyrecord.ErrExpired},
	}
	for name, c := range cases {
		if err := f.push(t, c.r, c.signer); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
	if f.keys.size() != 0 {
		t.Error("a refused record was kept")
	}
}

func TestHelperDistrustsTheSocket(t *testing.T) {
	// Whatever answers on the socket, the helper verifies: a record signed
	// by another key, or replayed to another instance or user, is dropped.
	f := newHelperFixture(t)
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	fakeStore := newKeyStore(testInstance, nil, func() time.Time { return f.now })
	s, _ := keyrecord.Sign(f.record("alice", f.userKey, time.Minute), forger)
	fakeStore.byUser["alice"] = []storedRecord{{signed: s, rec: f.record("alice", f.userKey, time.Minute)}}
	replayed := f.record("bob", f.userKey, time.Minute)
	rs, _ := keyrecord.Sign(replayed, f.ksk)
	fakeStore.byUser["alice"] = append(fakeStore.byUser["alice"], storedRecord{signed: rs, rec: f.record("alice", f.userKey, time.Minute)})
	f.keys.mu.Lock()
	f.keys.byUser = fakeStore.byUser
	f.keys.mu.Unlock()
	keys, rejected, err := AuthorizedKeys(f.cfg, "alice", "", f.now, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 || len(rejected) != 2 {
		t.Errorf("keys %v, rejected %v", keys, rejected)
	}
}

func TestHelperWithoutAgentPrintsNothing(t *testing.T) {
	cfg := HelperConfig{InstanceID: testInstance, Socket: filepath.Join(t.TempDir(), "absent.sock")}
	keys, _, err := AuthorizedKeys(cfg, "alice", "", time.Now(), 100*time.Millisecond)
	if err == nil || keys != nil {
		t.Errorf("keys %v, err %v", keys, err)
	}
}
