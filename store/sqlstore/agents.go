package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/postern-dev/postern"
)

// jsonCol scans a JSON text column into a Go value.
type jsonCol struct{ v any }

func (c jsonCol) Scan(src any) error {
	var b []byte
	switch x := src.(type) {
	case nil:
		return nil
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return fmt.Errorf("cannot scan %T as JSON", src)
	}
	return json.Unmarshal(b, c.v)
}

// UpdateInstanceFacts records an agent's report.
func (s *Store) UpdateInstanceFacts(ctx context.Context, id string, f postern.InstanceFacts) error {
	seen, err := timeArg(f.LastSeen)
	if err != nil {
		return err
	}
	hostKeys, _ := json.Marshal(nonNil(f.HostKeys))
	return s.writeInstanceTx(ctx, "update an instance", id, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE instances SET state = ?, hostname = ?, platform = ?, os = ?, private_ip = ?,
			public_ip = ?, vpc_id = ?, subnet_id = ?, host_keys = ?, ssh_port = ?, last_seen = ? WHERE id = ? AND state <> ?`,
			f.State, f.Hostname, f.Platform, f.OS, f.PrivateIP, f.PublicIP, f.VPCID, f.SubnetID, string(hostKeys), f.SSHPort, seen, id,
			postern.InstanceTerminated)
		return changed(res, err, terminatedOrMissing(ctx, tx, id))
	})
}

// SetInstanceState sets the state (and last-seen time unless zero).
func (s *Store) SetInstanceState(ctx context.Context, id, state string, lastSeen time.Time) error {
	seen, err := timeArg(lastSeen)
	if err != nil {
		return err
	}
	return s.writeInstanceTx(ctx, "update an instance", id, func(tx *sql.Tx) error {
		// Terminated is final: only terminating again touches it.
		res, err := tx.ExecContext(ctx, `UPDATE instances SET state = ?, last_seen = COALESCE(?, last_seen)
			WHERE id = ? AND (state <> ? OR ? = ?)`, state, seen, id, postern.InstanceTerminated, state, postern.InstanceTerminated)
		return changed(res, err, terminatedOrMissing(ctx, tx, id))
	})
}

// StopSilentInstances marks instances silent since before cutoff stopped.
func (s *Store) StopSilentInstances(ctx context.Context, cutoff time.Time) ([]string, error) {
	c, err := timeArg(cutoff)
	if err != nil {
		return nil, err
	}
	var ids []string
	err = s.writeTx(ctx, "stop silent instances", func(tx *sql.Tx) error {
		ids = nil // a retried transaction starts over
		rows, err := tx.QueryContext(ctx, `UPDATE instances SET state = ? WHERE state IN (?, ?) AND last_seen < ? RETURNING id`,
			postern.InstanceStopped, postern.InstanceRunning, postern.InstancePending, c)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// terminatedOrMissing explains why an update changed no row: the
// instance is terminated (KindConflict) or does not exist.
func terminatedOrMissing(ctx context.Context, tx *sql.Tx, id string) error {
	if ok, err := exists(ctx, tx, `SELECT 1 FROM instances WHERE id = ?`, id); err == nil && ok {
		return postern.Conflictf("instance %s is terminated", id)
	}
	return instanceKind.notFound(id)
}

func activationNotFound(id string) error {
	return postern.NotFoundf("activation %s does not exist", id)
}

const activationColumns = `id, code_hash, description, default_instance_name, registration_limit, registration_count,
	expires_at, vpc_id, tags, created_at, created_by`

func activationDest(a *postern.Activation) []any {
	return []any{&a.ID, &a.CodeHash, &a.Description, &a.DefaultInstanceName, &a.RegistrationLimit, &a.RegistrationCount,
		timeCol{&a.ExpiresAt}, &a.VPCID, jsonCol{&a.Tags}, timeCol{&a.CreatedAt}, &a.CreatedBy}
}

// CreateActivation stores a new activation.
func (s *Store) CreateActivation(ctx context.Context, a *postern.Activation) error {
	expires, err := timeArg(a.ExpiresAt)
	if err != nil {
		return err
	}
	created, err := timeArg(a.CreatedAt)
	if err != nil {
		return err
	}
	tags, _ := json.Marshal(nonNilTags(a.Tags))
	return s.writeTx(ctx, "create an activation", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO activations (`+activationColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.CodeHash, a.Description, a.DefaultInstanceName, a.RegistrationLimit, a.RegistrationCount,
			expires, a.VPCID, string(tags), created, a.CreatedBy)
		if err != nil && s.d.IsUnique(err) {
			return postern.Existsf("activation %s already exists", a.ID)
		}
		return err
	})
}

// GetActivation returns one activation.
func (s *Store) GetActivation(ctx context.Context, id string) (*postern.Activation, error) {
	var a postern.Activation
	err := s.r.QueryRowContext(ctx, `SELECT `+activationColumns+` FROM activations WHERE id = ?`, id).Scan(activationDest(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, activationNotFound(id)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read an activation")
	}
	return &a, nil
}

// ListActivations returns every activation, oldest first.
func (s *Store) ListActivations(ctx context.Context) ([]postern.Activation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+activationColumns+` FROM activations ORDER BY created_at, id`)
	if err != nil {
		return nil, dbErr(ctx, err, "list activations")
	}
	defer rows.Close()
	out := []postern.Activation{}
	for rows.Next() {
		var a postern.Activation
		if err := rows.Scan(activationDest(&a)...); err != nil {
			return nil, dbErr(ctx, err, "list activations")
		}
		out = append(out, a)
	}
	return out, dbErr(ctx, rows.Err(), "list activations")
}

// DeleteActivation deletes an activation; instances it registered stay.
func (s *Store) DeleteActivation(ctx context.Context, id string) error {
	return s.writeTx(ctx, "delete an activation", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM activations WHERE id = ?`, id)
		return changed(res, err, activationNotFound(id))
	})
}

// RegisterInstance stores inst and counts the registration atomically.
func (s *Store) RegisterInstance(ctx context.Context, activationID string, now time.Time, inst *postern.Instance) error {
	return s.writeTx(ctx, "register an instance", func(tx *sql.Tx) error {
		var a postern.Activation
		err := tx.QueryRowContext(ctx, `SELECT `+activationColumns+` FROM activations WHERE id = ?`, activationID).Scan(activationDest(&a)...)
		if errors.Is(err, sql.ErrNoRows) {
			return activationNotFound(activationID)
		}
		if err != nil {
			return err
		}
		if !a.ExpiresAt.IsZero() && !now.Before(a.ExpiresAt) {
			return postern.Conflictf("activation %s expired at %s", activationID, a.ExpiresAt.UTC().Format(time.RFC3339))
		}
		if a.RegistrationCount >= a.RegistrationLimit {
			return postern.CodedErrorf(postern.KindLimit, "", "activation %s has reached its registration limit of %d", activationID, a.RegistrationLimit)
		}
		if exists, err := exists(ctx, tx, `SELECT 1 FROM instances WHERE id = ?`, inst.ID); err != nil {
			return err
		} else if exists {
			return postern.Existsf("instance %s already exists", inst.ID)
		}
		if err := putInstance(ctx, tx, inst); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE activations SET registration_count = registration_count + 1 WHERE id = ?`, activationID)
		return err
	})
}

func nonNilTags(t []postern.Tag) []postern.Tag {
	if t == nil {
		return []postern.Tag{}
	}
	return t
}
