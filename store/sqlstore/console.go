package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/postern-dev/postern"
)

func loginProfileNotFound(user string) error {
	return postern.NotFoundf("user %q has no login profile (console password)", user)
}

func mfaNotFound(serial string) error {
	return postern.NotFoundf("MFA device %s does not exist", serial)
}

// endSessions deletes every console session of user: its password or MFA
// changed, or it is going away.
func endSessions(ctx context.Context, tx *sql.Tx, user string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE user_name = ?`, user)
	return err
}

// CreateLoginProfile stores a user's first console password.
func (s *Store) CreateLoginProfile(ctx context.Context, p *postern.LoginProfile) error {
	if p == nil || p.UserName == "" || p.PasswordHash == "" {
		return postern.Invalidf("a login profile needs a user name and a password hash")
	}
	created, err := timeArg(p.CreatedAt)
	if err != nil {
		return err
	}
	updated, err := timeArg(p.UpdatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create a login profile", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, p.UserName); err != nil {
			return err
		} else if !ok {
			return userNotFound(p.UserName)
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM login_profiles WHERE user_name = ?`, p.UserName); err != nil {
			return err
		} else if ok {
			return postern.Existsf("Login Profile for user %s already exists.", p.UserName)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO login_profiles (user_name, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?)`,
			p.UserName, p.PasswordHash, created, updated); err != nil {
			return err
		}
		return endSessions(ctx, tx, p.UserName)
	})
}

// GetLoginProfile returns a user's login profile.
func (s *Store) GetLoginProfile(ctx context.Context, user string) (*postern.LoginProfile, error) {
	var p postern.LoginProfile
	var created, updated sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT user_name, password_hash, created_at, updated_at FROM login_profiles WHERE user_name = ?`, user).
		Scan(&p.UserName, &p.PasswordHash, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, loginProfileNotFound(user)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read a login profile")
	}
	p.CreatedAt, p.UpdatedAt = scanTime(created), scanTime(updated)
	return &p, nil
}

// UpdateLoginProfile replaces a user's password hash and ends the user's
// sessions.
func (s *Store) UpdateLoginProfile(ctx context.Context, p *postern.LoginProfile) error {
	if p == nil || p.UserName == "" || p.PasswordHash == "" {
		return postern.Invalidf("a login profile needs a user name and a password hash")
	}
	updated, err := timeArg(p.UpdatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "update a login profile", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE login_profiles SET password_hash = ?, updated_at = ? WHERE user_name = ?`,
			p.PasswordHash, updated, p.UserName)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return loginProfileNotFound(p.UserName)
		}
		return endSessions(ctx, tx, p.UserName)
	})
}

// DeleteLoginProfile removes a user's console password and sessions.
func (s *Store) DeleteLoginProfile(ctx context.Context, user string) error {
	return s.writeTx(ctx, "delete a login profile", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM login_profiles WHERE user_name = ?`, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return loginProfileNotFound(user)
		}
		return endSessions(ctx, tx, user)
	})
}

// CreateMFADevice stores a new unassigned virtual MFA device.
func (s *Store) CreateMFADevice(ctx context.Context, d *postern.MFADevice) error {
	if d == nil || d.SerialNumber == "" || len(d.SealedSeed) == 0 {
		return postern.Invalidf("an MFA device needs a serial number and a sealed seed")
	}
	if d.UserName != "" {
		return postern.Invalidf("a new MFA device is unassigned; EnableMFADevice assigns it")
	}
	created, err := timeArg(d.CreatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create an MFA device", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO mfa_devices (serial_number, sealed_seed, created_at) VALUES (?, ?, ?)`,
			d.SerialNumber, d.SealedSeed, created)
		if s.d.IsUnique(err) {
			return postern.Existsf("MFA device %s already exists", d.SerialNumber)
		}
		return err
	})
}

const mfaColumns = `serial_number, coalesce(user_name, ''), sealed_seed, created_at, enabled_at, last_used_step`

func scanMFADevice(sc interface{ Scan(...any) error }) (postern.MFADevice, error) {
	var d postern.MFADevice
	var created, enabled sql.NullInt64
	err := sc.Scan(&d.SerialNumber, &d.UserName, &d.SealedSeed, &created, &enabled, &d.LastUsedStep)
	d.CreatedAt, d.EnabledAt = scanTime(created), scanTime(enabled)
	return d, err
}

// GetMFADevice returns the device with a serial number.
func (s *Store) GetMFADevice(ctx context.Context, serial string) (*postern.MFADevice, error) {
	d, err := scanMFADevice(s.r.QueryRowContext(ctx, `SELECT `+mfaColumns+` FROM mfa_devices WHERE serial_number = ?`, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mfaNotFound(serial)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read an MFA device")
	}
	return &d, nil
}

// ListMFADevices returns the devices assigned to user.
func (s *Store) ListMFADevices(ctx context.Context, user string) ([]postern.MFADevice, error) {
	out := []postern.MFADevice{}
	err := s.readTx(ctx, "list MFA devices", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, user); err != nil {
			return err
		} else if !ok {
			return userNotFound(user)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+mfaColumns+` FROM mfa_devices WHERE user_name = ? ORDER BY serial_number`, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanMFADevice(rows)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// mfaOwner returns the user a device is assigned to (NULL: unassigned).
func mfaOwner(ctx context.Context, tx *sql.Tx, serial string) (sql.NullString, error) {
	var owner sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT user_name FROM mfa_devices WHERE serial_number = ?`, serial).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return owner, mfaNotFound(serial)
	}
	return owner, err
}

// EnableMFADevice assigns an unassigned device to a user.
func (s *Store) EnableMFADevice(ctx context.Context, serial, user string, at time.Time, step int64) error {
	enabled, err := timeArg(at)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "enable an MFA device", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, user); err != nil {
			return err
		} else if !ok {
			return userNotFound(user)
		}
		if owner, err := mfaOwner(ctx, tx, serial); err != nil {
			return err
		} else if owner.Valid {
			return postern.Conflictf("MFA device %s is already in use", serial)
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM mfa_devices WHERE user_name = ?`, user); err != nil {
			return err
		} else if ok {
			return postern.Conflictf("user %q already has an MFA device; deactivate it first", user)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE mfa_devices SET user_name = ?, enabled_at = ?, last_used_step = ? WHERE serial_number = ?`,
			user, enabled, step, serial); err != nil {
			return err
		}
		return endSessions(ctx, tx, user)
	})
}

// DeactivateMFADevice unassigns a device from its user.
func (s *Store) DeactivateMFADevice(ctx context.Context, serial, user string) error {
	return s.writeTx(ctx, "deactivate an MFA device", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE mfa_devices SET user_name = NULL, enabled_at = NULL WHERE serial_number = ? AND user_name = ?`, serial, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return postern.NotFoundf("MFA device %s is not enabled for user %q", serial, user)
		}
		return endSessions(ctx, tx, user)
	})
}

// DeleteMFADevice deletes an unassigned device.
func (s *Store) DeleteMFADevice(ctx context.Context, serial string) error {
	return s.writeTx(ctx, "delete an MFA device", func(tx *sql.Tx) error {
		if owner, err := mfaOwner(ctx, tx, serial); err != nil {
			return err
		} else if owner.Valid {
			return postern.Conflictf("MFA device %s is enabled for user %q; deactivate it first", serial, owner.String)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM mfa_devices WHERE serial_number = ?`, serial)
		return err
	})
}

// UseMFAStep records a used TOTP step unless it is not newer than the last.
func (s *Store) UseMFAStep(ctx context.Context, serial string, step int64) error {
	return s.writeTx(ctx, "record a used MFA code", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE mfa_devices SET last_used_step = ? WHERE serial_number = ? AND last_used_step < ?`, step, serial, step)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM mfa_devices WHERE serial_number = ?`, serial); err != nil {
			return err
		} else if !ok {
			return mfaNotFound(serial)
		}
		return postern.Conflictf("this MFA code has been used already")
	})
}

// CreateConsoleSession stores a session and drops the user's expired ones.
func (s *Store) CreateConsoleSession(ctx context.Context, cs *postern.ConsoleSession) error {
	if cs == nil || len(cs.IDHash) == 0 || cs.UserName == "" || cs.ExpiresAt.IsZero() {
		return postern.Invalidf("a console session needs an id hash, a user name and an expiry")
	}
	var args []any
	for _, t := range []time.Time{cs.CreatedAt, cs.LastSeen, cs.ExpiresAt} {
		v, err := timeArg(t)
		if err != nil {
			return err
		}
		args = append(args, v)
	}
	return s.writeTx(ctx, "create a console session", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, cs.UserName); err != nil {
			return err
		} else if !ok {
			return userNotFound(cs.UserName)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE user_name = ? AND expires_at <= ?`, cs.UserName, args[0]); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO console_sessions (id_hash, user_name, mfa, created_at, last_seen, expires_at, source_ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			cs.IDHash, cs.UserName, cs.MFA, args[0], args[1], args[2], cs.SourceIP, cs.UserAgent)
		if s.d.IsUnique(err) {
			return postern.Existsf("the console session exists already")
		}
		return err
	})
}

// TouchConsoleSession returns a live session and marks it used at now.
func (s *Store) TouchConsoleSession(ctx context.Context, idHash []byte, now, idleCutoff time.Time) (*postern.ConsoleSession, error) {
	nowArg, err := timeArg(now)
	if err != nil {
		return nil, err
	}
	var out postern.ConsoleSession
	expired := false
	err = s.writeTx(ctx, "read a console session", func(tx *sql.Tx) error {
		var created, seen, expires sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT id_hash, user_name, mfa, created_at, last_seen, expires_at, source_ip, user_agent FROM console_sessions WHERE id_hash = ?`, idHash).
			Scan(&out.IDHash, &out.UserName, &out.MFA, &created, &seen, &expires, &out.SourceIP, &out.UserAgent)
		if errors.Is(err, sql.ErrNoRows) {
			return postern.NotFoundf("no such console session")
		} else if err != nil {
			return err
		}
		out.CreatedAt, out.LastSeen, out.ExpiresAt = scanTime(created), scanTime(seen), scanTime(expires)
		if !out.ExpiresAt.After(now) || out.LastSeen.Before(idleCutoff) {
			expired = true
			_, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE id_hash = ?`, idHash)
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?`, nowArg, idHash)
		return err
	})
	if err != nil {
		return nil, err
	}
	if expired {
		return nil, postern.NotFoundf("no such console session")
	}
	return &out, nil
}

// DeleteConsoleSession ends a session.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash []byte) error {
	return s.writeTx(ctx, "end a console session", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM console_sessions WHERE id_hash = ?`, idHash)
		return err
	})
}

// SignInFailures returns the live failure counts of keys.
func (s *Store) SignInFailures(ctx context.Context, keys []string, since time.Time) (map[string]postern.SignInFailure, error) {
	out := map[string]postern.SignInFailure{}
	if len(keys) == 0 {
		return out, nil
	}
	from, err := timeArg(since)
	if err != nil {
		return nil, err
	}
	where, args := idFilter("key", keys)
	rows, err := s.r.QueryContext(ctx, `SELECT key, count, last FROM sign_in_failures`+where+` AND last >= ?`, append(args, from)...)
	if err != nil {
		return nil, dbErr(ctx, err, "read sign-in failures")
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var f postern.SignInFailure
		var last int64
		if err := rows.Scan(&k, &f.Count, &last); err != nil {
			return nil, dbErr(ctx, err, "read sign-in failures")
		}
		f.Last = time.Unix(0, last).UTC()
		out[k] = f
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(ctx, err, "read sign-in failures")
	}
	return out, nil
}

// errAtLimit rolls back a reservation that found a key at its limit.
var errAtLimit = errors.New("a sign-in key is at its limit")

// ReserveSignInAttempt counts one failure under each key, unless a key is
// at its limit. Each key's upsert holds its row until the commit, so
// concurrent reservations, here or on another replica, count one after
// the other.
func (s *Store) ReserveSignInAttempt(ctx context.Context, keys []string, limits []int, at, since time.Time) (bool, error) {
	if len(limits) != len(keys) {
		return false, postern.Invalidf("%d sign-in keys with %d limits", len(keys), len(limits))
	}
	when, err := timeArg(at)
	if err != nil || when == nil {
		return false, postern.Invalidf("an attempt needs its time")
	}
	from, err := timeArg(since)
	if err != nil {
		return false, err
	}
	atLimit := false
	err = s.writeTx(ctx, "count a sign-in attempt", func(tx *sql.Tx) error {
		atLimit = false
		if _, err := tx.ExecContext(ctx, `DELETE FROM sign_in_failures WHERE last < ?`, from); err != nil {
			return err
		}
		for i, k := range keys {
			res, err := tx.ExecContext(ctx, `INSERT INTO sign_in_failures (key, count, last) VALUES (?, 1, ?)
				ON CONFLICT (key) DO UPDATE SET count = sign_in_failures.count + 1, last = excluded.last
				WHERE sign_in_failures.count < ?`, k, when, limits[i])
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				atLimit = true
				return errAtLimit
			}
		}
		return nil
	})
	if atLimit {
		return false, nil
	}
	return err == nil, err
}

// ReleaseSignInAttempt takes back one failure under each key.
func (s *Store) ReleaseSignInAttempt(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	where, args := idFilter("key", keys)
	return s.writeTx(ctx, "take back a sign-in attempt", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE sign_in_failures SET count = count - 1`+where+` AND count > 1`, args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sign_in_failures`+where+` AND count <= 1`, args...)
		return err
	})
}

// ResetSignInFailures forgets key's failures.
func (s *Store) ResetSignInFailures(ctx context.Context, key string) error {
	return s.writeTx(ctx, "forget failed sign-ins", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sign_in_failures WHERE key = ?`, key)
		return err
	})
}
