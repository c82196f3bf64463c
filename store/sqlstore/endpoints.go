package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/postern-dev/postern"
)

// Instance Connect Endpoints.

const endpointQuery = `SELECT e.id, e.subnet_id, e.vpc_id, e.availability_zone, e.state, e.state_message, e.dns_name,
	e.fips_dns_name, e.preserve_client_ip, e.security_group_ids, e.allowed_ports, e.max_connections, e.max_tunnel_seconds,
	e.client_token, e.request_digest, e.credential_hash, e.created_at, e.joined_at, e.created_by, t.key, t.value
	FROM endpoints e LEFT JOIN tags t ON t.resource_id = e.id`

// secondsCol scans an INTEGER number of seconds into a time.Duration.
type secondsCol struct{ d *time.Duration }

func (c secondsCol) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*c.d = time.Duration(n.Int64) * time.Second
	return nil
}

func endpointDest(e *postern.Endpoint) []any {
	return []any{&e.ID, &e.SubnetID, &e.VPCID, &e.AvailabilityZone, &e.State, &e.StateMessage, &e.DNSName,
		&e.FIPSDNSName, &e.PreserveClientIP, jsonCol{&e.SecurityGroupIDs}, jsonCol{&e.AllowedPorts}, &e.MaxConnections,
		secondsCol{&e.MaxTunnelDuration}, &e.ClientToken, &e.RequestDigest, &e.CredentialHash, timeCol{&e.CreatedAt},
		timeCol{&e.JoinedAt}, &e.CreatedBy}
}
func endpointID(e *postern.Endpoint) string           { return e.ID }
func endpointTags(e *postern.Endpoint) *[]postern.Tag { return &e.Tags }

func nonNilInts(v []int) []int {
	if v == nil {
		return []int{}
	}
	return v
}

// CreateEndpoint stores a new endpoint in an existing subnet, with its
// tags.
func (s *Store) CreateEndpoint(ctx context.Context, e *postern.Endpoint) error {
	if e == nil || !strings.HasPrefix(e.ID, endpointKind.prefix) {
		return postern.Invalidf("an endpoint needs an id starting with %s", endpointKind.prefix)
	}
	created, err := timeArg(e.CreatedAt)
	if err != nil {
		return err
	}
	joined, err := timeArg(e.JoinedAt)
	if err != nil {
		return err
	}
	groups, _ := json.Marshal(nonNil(e.SecurityGroupIDs))
	ports, _ := json.Marshal(nonNilInts(e.AllowedPorts))
	return s.writeTx(ctx, "create an endpoint", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM subnets WHERE id = ?`, e.SubnetID); err != nil {
			return err
		} else if !ok {
			return subnetKind.notFound(e.SubnetID)
		}
		if e.ClientToken != "" {
			var other string
			err := tx.QueryRowContext(ctx, `SELECT id FROM endpoints WHERE client_token = ?`, e.ClientToken).Scan(&other)
			if err == nil {
				return postern.Existsf("client token %q was used already, for %s", e.ClientToken, other)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		if live, err := liveEndpointIn(ctx, tx, e.SubnetID); err != nil {
			return err
		} else if live != "" && e.Live() {
			return postern.Conflictf("subnet %s already has Instance Connect Endpoint %s", e.SubnetID, live)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO endpoints (id, subnet_id, vpc_id, availability_zone, state, state_message,
			dns_name, fips_dns_name, preserve_client_ip, security_group_ids, allowed_ports, max_connections, max_tunnel_seconds,
			client_token, request_digest, credential_hash, created_at, joined_at, created_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, e.SubnetID, e.VPCID, e.AvailabilityZone, e.State, e.StateMessage, e.DNSName, e.FIPSDNSName,
			e.PreserveClientIP, string(groups), string(ports), e.MaxConnections, int64(e.MaxTunnelDuration/time.Second),
			e.ClientToken, emptyIfNil(e.RequestDigest), emptyIfNil(e.CredentialHash), created, joined, e.CreatedBy)
		if s.d.IsUnique(err) {
			return postern.Existsf("Instance Connect Endpoint %s already exists", e.ID)
		}
		if err != nil {
			return err
		}
		return insertTags(ctx, tx, e.ID, e.Tags)
	})
}

// liveEndpointIn returns the id of the subnet's live endpoint, or "".
func liveEndpointIn(ctx context.Context, q queryer, subnetID string) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM endpoints WHERE subnet_id = ? AND state NOT IN (?, ?) LIMIT 1`,
		subnetID, postern.EndpointDeleteInProgress, postern.EndpointDeleteComplete).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// GetEndpoint returns one endpoint with its tags.
func (s *Store) GetEndpoint(ctx context.Context, id string) (*postern.Endpoint, error) {
	es, err := queryTagged(ctx, s.r, endpointQuery+` WHERE e.id = ? ORDER BY t.key`, []any{id}, endpointDest, endpointID, endpointTags)
	if err != nil {
		return nil, dbErr(ctx, err, "read an endpoint")
	}
	if len(es) == 0 {
		return nil, endpointKind.notFound(id)
	}
	return &es[0], nil
}

// ListEndpoints returns the endpoints with the given ids (all when empty),
// by id.
func (s *Store) ListEndpoints(ctx context.Context, ids []string) ([]postern.Endpoint, error) {
	where, args := idFilter("e.id", ids)
	es, err := queryTagged(ctx, s.r, endpointQuery+where+` ORDER BY e.id, t.key`, args, endpointDest, endpointID, endpointTags)
	if err != nil {
		return nil, dbErr(ctx, err, "list endpoints")
	}
	if err := firstMissing(endpointKind, ids, es, endpointID); err != nil {
		return nil, err
	}
	return es, nil
}

// endpointState reads an endpoint's state and whether it ever joined,
// for the updates below.
func endpointState(ctx context.Context, tx *sql.Tx, id string) (state string, joined bool, err error) {
	var at sql.NullInt64
	err = tx.QueryRowContext(ctx, `SELECT state, joined_at FROM endpoints WHERE id = ?`, id).Scan(&state, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, endpointKind.notFound(id)
	}
	return state, at.Valid, err
}

func deletedConflict(id, state string) error {
	return postern.Conflictf("Instance Connect Endpoint %s is %s", id, state)
}

// UpdateEndpointSettings replaces the settings of a live endpoint.
func (s *Store) UpdateEndpointSettings(ctx context.Context, id string, set postern.EndpointSettings) error {
	ports, _ := json.Marshal(nonNilInts(set.AllowedPorts))
	return s.writeTx(ctx, "update an endpoint", func(tx *sql.Tx) error {
		state, _, err := endpointState(ctx, tx, id)
		if err != nil {
			return err
		}
		if state == postern.EndpointDeleteInProgress || state == postern.EndpointDeleteComplete {
			return deletedConflict(id, state)
		}
		_, err = tx.ExecContext(ctx, `UPDATE endpoints SET allowed_ports = ?, max_connections = ?, max_tunnel_seconds = ? WHERE id = ?`,
			string(ports), set.MaxConnections, int64(set.MaxTunnelDuration/time.Second), id)
		return err
	})
}

// JoinEndpoint records a join of the endpoint's process.
func (s *Store) JoinEndpoint(ctx context.Context, id, dnsName string, when time.Time) error {
	at, err := timeArg(when)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "join an endpoint", func(tx *sql.Tx) error {
		state, _, err := endpointState(ctx, tx, id)
		if err != nil {
			return err
		}
		if state == postern.EndpointDeleteInProgress || state == postern.EndpointDeleteComplete {
			return deletedConflict(id, state)
		}
		_, err = tx.ExecContext(ctx, `UPDATE endpoints SET
			state = CASE WHEN state = ? THEN ? ELSE state END,
			state_message = CASE WHEN state = ? THEN '' ELSE state_message END,
			joined_at = COALESCE(joined_at, ?),
			dns_name = CASE WHEN ? <> '' THEN ? ELSE dns_name END,
			fips_dns_name = CASE WHEN ? <> '' THEN ? ELSE fips_dns_name END
			WHERE id = ?`,
			postern.EndpointCreateInProgress, postern.EndpointCreateComplete, postern.EndpointCreateInProgress,
			at, dnsName, dnsName, dnsName, dnsName, id)
		return err
	})
}

// DeleteEndpoint moves an endpoint to delete-in-progress (when it ever
// joined) or delete-complete.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) (*postern.Endpoint, error) {
	err := s.writeTx(ctx, "delete an endpoint", func(tx *sql.Tx) error {
		state, joined, err := endpointState(ctx, tx, id)
		if err != nil {
			return err
		}
		if state == postern.EndpointDeleteInProgress || state == postern.EndpointDeleteComplete {
			return deletedConflict(id, state)
		}
		next := postern.EndpointDeleteComplete
		if joined {
			next = postern.EndpointDeleteInProgress
		}
		_, err = tx.ExecContext(ctx, `UPDATE endpoints SET state = ?, state_message = '' WHERE id = ?`, next, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.readEndpointAfterWrite(ctx, id)
}

// readEndpointAfterWrite reads an endpoint on the writer connection, so
// that a reader on an older snapshot cannot answer with the state before
// the write.
func (s *Store) readEndpointAfterWrite(ctx context.Context, id string) (*postern.Endpoint, error) {
	es, err := queryTagged(ctx, s.w, endpointQuery+` WHERE e.id = ? ORDER BY t.key`, []any{id}, endpointDest, endpointID, endpointTags)
	if err != nil {
		return nil, dbErr(ctx, err, "read an endpoint")
	}
	if len(es) == 0 {
		return nil, endpointKind.notFound(id)
	}
	return &es[0], nil
}

// CompleteEndpointDeletion moves delete-in-progress to delete-complete.
func (s *Store) CompleteEndpointDeletion(ctx context.Context, id string) error {
	return s.writeTx(ctx, "delete an endpoint", func(tx *sql.Tx) error {
		state, _, err := endpointState(ctx, tx, id)
		if err != nil {
			return err
		}
		if state != postern.EndpointDeleteInProgress {
			return postern.Conflictf("Instance Connect Endpoint %s is %s, not %s", id, state, postern.EndpointDeleteInProgress)
		}
		_, err = tx.ExecContext(ctx, `UPDATE endpoints SET state = ? WHERE id = ?`, postern.EndpointDeleteComplete, id)
		return err
	})
}

// TouchEndpointProcess records that an endpoint's process was heard from.
func (s *Store) TouchEndpointProcess(ctx context.Context, endpointID, processID string, at time.Time) error {
	when, err := timeArg(at)
	if err != nil || when == nil {
		return postern.Invalidf("a process needs a time it was seen")
	}
	return s.writeTx(ctx, "record an endpoint process", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO endpoint_processes (endpoint_id, process_id, seen_at) VALUES (?, ?, ?)
			ON CONFLICT (endpoint_id, process_id) DO UPDATE SET seen_at = excluded.seen_at`, endpointID, processID, when)
		return err
	})
}

// liveTunnelsWhere selects the tunnels whose processes are not stale.
const liveTunnelsWhere = ` EXISTS (SELECT 1 FROM endpoint_processes p
	WHERE p.endpoint_id = t.endpoint_id AND p.process_id = t.process_id AND p.seen_at >= ?)`

// OpenTunnel records a live tunnel within its endpoint's limit.
func (s *Store) OpenTunnel(ctx context.Context, t *postern.LiveTunnel, max int, staleBefore time.Time) error {
	if t == nil || t.ID == "" || t.EndpointID == "" || t.ProcessID == "" {
		return postern.Invalidf("a live tunnel needs an id, an endpoint and a process")
	}
	opened, err := timeArg(t.OpenedAt)
	if err != nil || opened == nil {
		return postern.Invalidf("a live tunnel needs the time it opened")
	}
	stale, err := timeArg(staleBefore)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "record a tunnel", func(tx *sql.Tx) error {
		// The process asking is alive.
		if _, err := tx.ExecContext(ctx, `INSERT INTO endpoint_processes (endpoint_id, process_id, seen_at) VALUES (?, ?, ?)
			ON CONFLICT (endpoint_id, process_id) DO UPDATE SET seen_at = CASE WHEN excluded.seen_at > endpoint_processes.seen_at THEN excluded.seen_at ELSE endpoint_processes.seen_at END`,
			t.EndpointID, t.ProcessID, opened); err != nil {
			return err
		}
		// Forget the tunnels of processes that went silent: they died.
		if _, err := tx.ExecContext(ctx, `DELETE FROM endpoint_tunnels AS t WHERE t.endpoint_id = ? AND NOT`+liveTunnelsWhere, t.EndpointID, stale); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM endpoint_tunnels WHERE endpoint_id = ?`, t.EndpointID).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return &postern.Error{Kind: postern.KindLimit, Code: "TooManyTunnels",
				Message: fmt.Sprintf("The Instance Connect Endpoint already carries its limit of %d concurrent tunnels; try again when one closes.", max)}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO endpoint_tunnels (id, endpoint_id, process_id, opened_at, detail) VALUES (?, ?, ?, ?, ?)`,
			t.ID, t.EndpointID, t.ProcessID, opened, emptyIfNil(t.Detail))
		if s.d.IsUnique(err) {
			return postern.Existsf("tunnel %s is already recorded", t.ID)
		}
		return err
	})
}

// CloseTunnel forgets a live tunnel and returns it.
func (s *Store) CloseTunnel(ctx context.Context, id string) (*postern.LiveTunnel, error) {
	var t postern.LiveTunnel
	err := s.writeTx(ctx, "forget a tunnel", func(tx *sql.Tx) error {
		var opened int64
		err := tx.QueryRowContext(ctx, `SELECT id, endpoint_id, process_id, opened_at, detail FROM endpoint_tunnels WHERE id = ?`, id).
			Scan(&t.ID, &t.EndpointID, &t.ProcessID, &opened, &t.Detail)
		if errors.Is(err, sql.ErrNoRows) {
			return postern.NotFoundf("tunnel %s is not live", id)
		}
		if err != nil {
			return err
		}
		t.OpenedAt = time.Unix(0, opened).UTC()
		_, err = tx.ExecContext(ctx, `DELETE FROM endpoint_tunnels WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// CountTunnels returns the live tunnels of each endpoint that has any.
func (s *Store) CountTunnels(ctx context.Context, staleBefore time.Time) (map[string]int, error) {
	stale, err := timeArg(staleBefore)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT t.endpoint_id, count(*) FROM endpoint_tunnels AS t WHERE`+liveTunnelsWhere+` GROUP BY t.endpoint_id`, stale)
	if err != nil {
		return nil, dbErr(ctx, err, "count tunnels")
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, dbErr(ctx, err, "count tunnels")
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(ctx, err, "count tunnels")
	}
	return out, nil
}

// LiveEndpointProcesses counts the endpoint's processes heard from lately.
func (s *Store) LiveEndpointProcesses(ctx context.Context, endpointID string, since time.Time) (int, error) {
	from, err := timeArg(since)
	if err != nil {
		return 0, err
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM endpoint_processes WHERE endpoint_id = ? AND seen_at >= ?`, endpointID, from).Scan(&n); err != nil {
		return 0, dbErr(ctx, err, "count endpoint processes")
	}
	return n, nil
}
