package devsshd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Errors a refused key gets (logged, never shown to the client).
var (
	ErrWrongUser     = errors.New("only the user the server runs as may log in")
	ErrNotAuthorized = errors.New("the helper printed no line for this key")
	ErrExpired       = errors.New("the key's expiry-time has passed")
	ErrOption        = errors.New("the key's line has options this server cannot honour")
)

// checkKey decides on an offered key the way sshd does with an
// AuthorizedKeysCommand: run the helper, then look for the key among the
// lines it printed. The ssh package caches the answer for the signature
// that follows.
func (s *Server) checkKey(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	err := s.authorize(conn.User(), key)
	if err != nil {
		s.log.Info("refused a key", "user", conn.User(), "fingerprint", fp, "remote", conn.RemoteAddr(), "why", err)
		return nil, err
	}
	return &ssh.Permissions{Extensions: map[string]string{"fingerprint": fp}}, nil
}

// loggedIn runs once the client proved it holds an accepted key.
func (s *Server) loggedIn(conn ssh.ConnMetadata, _ ssh.PublicKey, p *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	s.log.Info("accepted a key", "user", conn.User(), "fingerprint", p.Extensions["fingerprint"], "remote", conn.RemoteAddr())
	return p, nil
}

func (s *Server) authorize(user string, key ssh.PublicKey) error {
	// Checked before the helper runs: a key for another user would be
	// useless, as this process cannot become that user.
	if user != s.account.name {
		return fmt.Errorf("%w (%s), not %q", ErrWrongUser, s.account.name, user)
	}
	out, err := s.runHelper(user, ssh.FingerprintSHA256(key))
	if err != nil {
		return err
	}
	return matchKey(out, key, s.cfg.Now())
}

// runHelper runs the helper as sshd would: a clean environment, the user
// and fingerprint as arguments, its output ignored unless it exits 0.
func (s *Server) runHelper(user, fingerprint string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HelperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.Helper, "authorized-keys", "--config", s.cfg.HelperConfig, user, fingerprint)
	cmd.Env = []string{"PATH=" + defaultPath(s.account.uid)}
	cmd.WaitDelay = time.Second // a stray child holding stdout must not hold up the login
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helper %s: %v: %s", s.cfg.Helper, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// matchKey reports whether one of the authorized_keys lines in out holds
// key with an expiry-time after now. A line with any other option is
// passed over: sshd would enforce it, and this server cannot.
func matchKey(out []byte, key ssh.PublicKey, now time.Time) error {
	want := key.Marshal()
	refused := ErrNotAuthorized
	for line := range bytes.Lines(out) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		pk, _, opts, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil || !bytes.Equal(pk.Marshal(), want) {
			continue
		}
		expiry, err := expiryTime(opts)
		if err != nil {
			refused = err
			continue
		}
		if !now.Before(expiry) {
			refused = fmt.Errorf("%w (%s)", ErrExpired, expiry.UTC().Format(time.RFC3339))
			continue
		}
		return nil
	}
	return refused
}

// expiryTime finds the expiry-time option among opts; it must be there,
// and be the only option.
func expiryTime(opts []string) (time.Time, error) {
	var expiry time.Time
	found := false
	for _, o := range opts {
		name, value, _ := strings.Cut(o, "=")
		if !strings.EqualFold(name, "expiry-time") || found {
			return time.Time{}, fmt.Errorf("%w: %s", ErrOption, o)
		}
		t, err := parseExpiry(strings.Trim(value, `"`))
		if err != nil {
			return time.Time{}, err
		}
		expiry, found = t, true
	}
	if !found {
		return time.Time{}, fmt.Errorf("%w: no expiry-time (Postern's helper always prints one)", ErrOption)
	}
	return expiry, nil
}

// parseExpiry reads an OpenSSH absolute time: YYYYMMDD[HHMM[SS]], in UTC
// with a trailing Z, else in local time.
func parseExpiry(v string) (time.Time, error) {
	loc := time.Local
	if s, ok := strings.CutSuffix(v, "Z"); ok {
		v, loc = s, time.UTC
	} else if s, ok := strings.CutSuffix(v, "z"); ok {
		v, loc = s, time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(v)]
	if !ok {
		return time.Time{}, fmt.Errorf("%w: bad expiry-time %q", ErrOption, v)
	}
	t, err := time.ParseInLocation(layout, v, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: bad expiry-time %q", ErrOption, v)
	}
	return t, nil
}
