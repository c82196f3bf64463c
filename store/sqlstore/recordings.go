package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/postern-dev/postern"
)

// Recording list limits.
const (
	DefaultRecordingLimit = 50
	MaxRecordingLimit     = 1000
)

const recordingColumns = `id, user_name, user_arn, instance_id, os_user, source_ip, cols, rows,
	started_at, ended_at, size, events, error`

func recordingNotFound(id string) error {
	return postern.NotFoundf("recording %s does not exist", id)
}

func scanRecording(row interface{ Scan(...any) error }, r *postern.Recording) error {
	return row.Scan(&r.ID, &r.UserName, &r.UserARN, &r.InstanceID, &r.OSUser, &r.SourceIP, &r.Cols, &r.Rows,
		timeCol{&r.StartedAt}, timeCol{&r.EndedAt}, &r.Size, &r.Events, &r.Error)
}

// CreateRecording indexes a new recording.
func (s *Store) CreateRecording(ctx context.Context, r *postern.Recording) error {
	if r == nil || r.ID == "" || r.StartedAt.IsZero() {
		return postern.Invalidf("a recording needs an id and a start time")
	}
	started, err := timeArg(r.StartedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "index a recording", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO recordings (id, user_name, user_arn, instance_id, os_user, source_ip, cols, rows, started_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.UserName, r.UserARN, r.InstanceID, r.OSUser, r.SourceIP, r.Cols, r.Rows, started)
		if s.d.IsUnique(err) {
			return postern.Existsf("recording %s already exists", r.ID)
		}
		return err
	})
}

// FinishRecording records how a recording ended.
func (s *Store) FinishRecording(ctx context.Context, id string, end postern.RecordingEnd) error {
	if end.EndedAt.IsZero() {
		return postern.Invalidf("recording %s: an end needs a time", id)
	}
	ended, err := timeArg(end.EndedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "finish a recording", func(tx *sql.Tx) error {
		var done sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT ended_at FROM recordings WHERE id = ?`, id).Scan(&done)
		if errors.Is(err, sql.ErrNoRows) {
			return recordingNotFound(id)
		} else if err != nil {
			return err
		}
		if done.Valid {
			return postern.Conflictf("recording %s is finished already", id)
		}
		_, err = tx.ExecContext(ctx, `UPDATE recordings SET ended_at = ?, size = ?, events = ?, error = ? WHERE id = ?`,
			ended, end.Size, end.Events, end.Error, id)
		return err
	})
}

// GetRecording returns one recording's index entry.
func (s *Store) GetRecording(ctx context.Context, id string) (*postern.Recording, error) {
	var r postern.Recording
	err := scanRecording(s.r.QueryRowContext(ctx, `SELECT `+recordingColumns+` FROM recordings WHERE id = ?`, id), &r)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, recordingNotFound(id)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read a recording")
	}
	return &r, nil
}

// ListRecordings returns recordings newest first, by start time and then
// id; the next page's token is the id of the last one returned.
func (s *Store) ListRecordings(ctx context.Context, f postern.RecordingFilter) ([]postern.Recording, string, error) {
	var (
		where []string
		args  []any
	)
	if f.User != "" {
		where, args = append(where, `user_name = ?`), append(args, f.User)
	}
	if f.InstanceID != "" {
		where, args = append(where, `instance_id = ?`), append(args, f.InstanceID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, `started_at >= ?`), append(args, clampNanos(f.Since))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultRecordingLimit
	}
	limit = min(limit, MaxRecordingLimit)
	var out []postern.Recording
	err := s.readTx(ctx, "list recordings", func(tx *sql.Tx) error {
		if f.Token != "" {
			var at int64
			err := tx.QueryRowContext(ctx, `SELECT started_at FROM recordings WHERE id = ?`, f.Token).Scan(&at)
			if errors.Is(err, sql.ErrNoRows) {
				return postern.Invalidf("the recordings page token is not valid")
			} else if err != nil {
				return err
			}
			where, args = append(where, `(started_at, id) < (?, ?)`), append(args, at, f.Token)
		}
		query := `SELECT ` + recordingColumns + ` FROM recordings`
		if len(where) > 0 {
			query += ` WHERE ` + strings.Join(where, ` AND `)
		}
		// One more than asked for tells whether another page follows.
		rows, err := tx.QueryContext(ctx, query+` ORDER BY started_at DESC, id DESC LIMIT ?`, append(args, limit+1)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = []postern.Recording{}
		for rows.Next() {
			var r postern.Recording
			if err := scanRecording(rows, &r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}
