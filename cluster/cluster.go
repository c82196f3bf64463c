// Package cluster lets several server replicas on one PostgreSQL database
// act as one: an agent keeps its session with one replica, and a key push
// that arrives at any other replica reaches it.
//
// Each replica has a random id and LISTENs on its own channel. When an
// agent's session starts, the replica records itself as the session's
// holder (table agent_sessions); a replica that must push a key to an agent
// it does not hold looks the holder up and NOTIFYs it; the holder pushes
// over the agent's session and NOTIFYs the acknowledgement back. The push
// returns success only on that acknowledgement, exactly as a local push.
package cluster

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern-dev/postern/agenthub"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/keyrecord"
)

// LocalHub is the replica's own agent hub.
type LocalHub interface {
	Push(ctx context.Context, instanceID string, rec keyrecord.Signed) error
	Connected(instanceID string) bool
}

// Config says how a replica joins the cluster.
type Config struct {
	// URL is the database's URL; the cluster keeps one connection of its
	// own on it for LISTEN.
	URL string
	// DB is the store's pool (queries with ? placeholders).
	DB     *sql.DB
	Hub    LocalHub
	Logger *slog.Logger
	// OnEndpointChange, when set, is called on every replica (this one
	// included) when any replica announces that an endpoint changed.
	OnEndpointChange func(endpointID string)
	// OnRelayDial, when set, is called on the replica that holds an
	// endpoint process's control connection when another replica routes
	// a relayed tunnel to that process.
	OnRelayDial func(endpointID, process string, t endpointproto.Tunnel)
}

// Cluster is this replica's part of the cluster.
type Cluster struct {
	cfg Config
	id  string
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]chan string // push id → the holder's answer ("" is success)

	done chan struct{}
}

// message is what replicas NOTIFY each other: a push to deliver or the
// answer to one.
type message struct {
	Type       string                `json:"t"` // "push", "ack", "endpoint" or "dial"
	ID         string                `json:"id"`
	From       string                `json:"from,omitempty"`
	InstanceID string                `json:"i,omitempty"` // or the endpoint id
	Record     *keyrecord.Signed     `json:"r,omitempty"`
	TimeoutMS  int64                 `json:"ms,omitempty"`
	Process    string                `json:"p,omitempty"`
	Tunnel     *endpointproto.Tunnel `json:"tun,omitempty"`
	Error      string                `json:"e,omitempty"`
}

// New joins the cluster and listens until ctx ends. It returns once the
// replica's channel is listened on, or with the error that prevented it
// (or when start ends first).
func New(ctx, start context.Context, cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg: cfg, id: hex.EncodeToString(b[:]), log: cfg.Logger,
		pending: map[string]chan string{}, done: make(chan struct{}),
	}
	first := make(chan error, 1)
	go c.listen(ctx, start, first)
	select {
	case err := <-first:
		if err != nil {
			return nil, err
		}
	case <-start.Done():
		return nil, start.Err()
	}
	return c, nil
}

// ID is this replica's id.
func (c *Cluster) ID() string { return c.id }

// Done is closed when the cluster has stopped listening (ctx ended).
func (c *Cluster) Done() <-chan struct{} { return c.done }

func channelOf(replica string) string { return "postern_replica_" + replica }

// allChannel carries announcements to every replica.
const allChannel = "postern_all"

// listen keeps a LISTEN connection and answers what arrives on it,
// reconnecting with backoff when the connection is lost. The first
// attempt's outcome goes to first.
func (c *Cluster) listen(ctx, start context.Context, first chan<- error) {
	defer close(c.done)
	wait := 200 * time.Millisecond
	for ctx.Err() == nil {
		cctx := ctx
		if first != nil {
			cctx = start // the first attempt is bounded by New's start
		}
		conn, err := pgx.Connect(cctx, c.cfg.URL)
		if err == nil {
			_, err = conn.Exec(cctx, "LISTEN "+channelOf(c.id)+"; LISTEN "+allChannel)
		}
		if first != nil {
			first <- err
			first = nil
			if err != nil {
				if conn != nil {
					conn.Close(context.Background())
				}
				return
			}
		}
		if err == nil {
			wait = 200 * time.Millisecond
			err = c.receive(ctx, conn)
			conn.Close(context.Background())
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("cluster: lost the database's notifications; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (c *Cluster) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var m message
		if err := json.Unmarshal([]byte(n.Payload), &m); err != nil {
			c.log.Warn("cluster: unreadable notification", "err", err)
			continue
		}
		switch m.Type {
		case "endpoint":
			if c.cfg.OnEndpointChange != nil && m.InstanceID != "" {
				go c.cfg.OnEndpointChange(m.InstanceID)
			}
		case "push":
			go c.deliver(ctx, m)
		case "dial":
			if c.cfg.OnRelayDial != nil && m.Tunnel != nil {
				go c.cfg.OnRelayDial(m.InstanceID, m.Process, *m.Tunnel)
			}
		case "ack":
			c.mu.Lock()
			ch := c.pending[m.ID]
			c.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m.Error:
				default:
				}
			}
		}
	}
}

// deliver pushes a record another replica routed here and answers it.
func (c *Cluster) deliver(ctx context.Context, m message) {
	if m.Record == nil || m.From == "" {
		return
	}
	timeout := min(max(time.Duration(m.TimeoutMS)*time.Millisecond, time.Second), time.Minute)
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ans := ""
	if err := c.cfg.Hub.Push(pctx, m.InstanceID, *m.Record); err != nil {
		ans = err.Error()
		if errors.Is(err, agenthub.ErrNotConnected) {
			ans = "not connected"
		}
	}
	if err := c.notify(ctx, m.From, message{Type: "ack", ID: m.ID, Error: ans}); err != nil {
		c.log.Warn("cluster: cannot answer a routed push", "instance", m.InstanceID, "err", err)
	}
}

func (c *Cluster) notify(ctx context.Context, replica string, m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = c.cfg.DB.ExecContext(ctx, `SELECT pg_notify(?, ?)`, channelOf(replica), string(b))
	return err
}

// Push delivers rec to the instance's agent, through this replica's hub
// when the agent's session is here, else through the replica that holds
// it. It returns once the agent acknowledged the record; an agent held by
// no replica is agenthub.ErrNotConnected.
func (c *Cluster) Push(ctx context.Context, instanceID string, rec keyrecord.Signed) error {
	err := c.cfg.Hub.Push(ctx, instanceID, rec)
	if !errors.Is(err, agenthub.ErrNotConnected) {
		return err
	}
	// The holder, if it is alive: a replica killed with its agents'
	// sessions leaves its rows behind until they reconnect elsewhere.
	var holder string
	qerr := c.cfg.DB.QueryRowContext(ctx, `SELECT s.replica_id FROM agent_sessions s JOIN replicas r ON r.id = s.replica_id
		WHERE s.instance_id = ? AND r.seen_at >= ?`, instanceID, c.liveSince()).Scan(&holder)
	if errors.Is(qerr, sql.ErrNoRows) || holder == c.id {
		return err
	}
	if qerr != nil {
		return fmt.Errorf("%w: cannot look up the replica that holds it: %v", agenthub.ErrNotConnected, qerr)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ch := make(chan string, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	m := message{Type: "push", ID: id, From: c.id, InstanceID: instanceID, Record: &rec, TimeoutMS: timeout.Milliseconds()}
	if err := c.notify(ctx, holder, m); err != nil {
		return fmt.Errorf("%w: cannot reach the replica that holds it: %v", agenthub.ErrNotConnected, err)
	}
	select {
	case ans := <-ch:
		if ans != "" {
			return fmt.Errorf("%w (through replica %s): %s", agenthub.ErrNotConnected, holder, ans)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Hold records this replica as the holder of the instance's agent session.
func (c *Cluster) Hold(ctx context.Context, instanceID string) error {
	_, err := c.cfg.DB.ExecContext(ctx, `INSERT INTO agent_sessions (instance_id, replica_id, since) VALUES (?, ?, ?)
		ON CONFLICT (instance_id) DO UPDATE SET replica_id = excluded.replica_id, since = excluded.since`,
		instanceID, c.id, time.Now().UnixNano())
	return err
}

// Release forgets this replica as the holder of the instance's session,
// unless the agent has a live session here again, or another replica
// holds it by now.
func (c *Cluster) Release(ctx context.Context, instanceID string) error {
	if c.cfg.Hub.Connected(instanceID) {
		return nil
	}
	_, err := c.cfg.DB.ExecContext(ctx, `DELETE FROM agent_sessions WHERE instance_id = ? AND replica_id = ?`, instanceID, c.id)
	return err
}

// Replicas are seen every HeartbeatInterval; one not seen for
// 3×HeartbeatInterval is gone.
const HeartbeatInterval = 2 * time.Second

// Heartbeat records this replica as live every HeartbeatInterval and
// calls onCount with the number of live replicas whenever it changes
// (first at once), until ctx ends; then it removes the replica's record.
func (c *Cluster) Heartbeat(ctx context.Context, onCount func(n int)) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	last := 0
	for {
		n, err := c.beat(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("cluster: cannot record this replica as live", "err", err)
		}
		if err == nil && n != last {
			last = n
			onCount(n)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.cfg.DB.ExecContext(dctx, `DELETE FROM replicas WHERE id = ?`, c.id)
			return
		case <-t.C:
		}
	}
}

// beat records this replica as seen now and counts the live replicas.
func (c *Cluster) beat(ctx context.Context) (int, error) {
	now := time.Now()
	if _, err := c.cfg.DB.ExecContext(ctx, `INSERT INTO replicas (id, seen_at) VALUES (?, ?)
		ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at`, c.id, now.UnixNano()); err != nil {
		return 0, err
	}
	gone := c.liveSince()
	if _, err := c.cfg.DB.ExecContext(ctx, `DELETE FROM replicas WHERE seen_at < ?`, now.Add(-time.Hour).UnixNano()); err != nil {
		return 0, err
	}
	var n int
	err := c.cfg.DB.QueryRowContext(ctx, `SELECT count(*) FROM replicas WHERE seen_at >= ?`, gone).Scan(&n)
	return max(n, 1), err
}

// EndpointChanged announces to every replica (this one included) that an
// endpoint's settings or state changed, so that each tells the endpoint's
// processes connected to it.
func (c *Cluster) EndpointChanged(ctx context.Context, endpointID string) error {
	b, err := json.Marshal(message{Type: "endpoint", InstanceID: endpointID})
	if err != nil {
		return err
	}
	_, err = c.cfg.DB.ExecContext(ctx, `SELECT pg_notify(?, ?)`, allChannel, string(b))
	return err
}

// HoldEndpointProcess records this replica as the holder of an endpoint
// process's control connection (relay: the process is in relay mode).
func (c *Cluster) HoldEndpointProcess(ctx context.Context, endpointID, process string, relay bool) error {
	_, err := c.cfg.DB.ExecContext(ctx, `INSERT INTO endpoint_sessions (endpoint_id, process_id, replica_id, relay) VALUES (?, ?, ?, ?)
		ON CONFLICT (endpoint_id, process_id) DO UPDATE SET replica_id = excluded.replica_id, relay = excluded.relay`,
		endpointID, process, c.id, relay)
	return err
}

// ReleaseEndpointProcess forgets this replica as the holder of a process's
// control connection, unless another replica holds it by now.
func (c *Cluster) ReleaseEndpointProcess(ctx context.Context, endpointID, process string) error {
	_, err := c.cfg.DB.ExecContext(ctx, `DELETE FROM endpoint_sessions WHERE endpoint_id = ? AND process_id = ? AND replica_id = ?`,
		endpointID, process, c.id)
	return err
}

// liveSince is the oldest heartbeat of a replica taken for alive.
func (c *Cluster) liveSince() int64 {
	return time.Now().Add(-3 * HeartbeatInterval).UnixNano()
}

// RelayProcess picks, at random, a relay-mode process of the endpoint
// whose control connection another live replica holds, and returns it
// with that replica; ok is false when there is none.
func (c *Cluster) RelayProcess(ctx context.Context, endpointID string) (process, replica string, ok bool, err error) {
	live := c.liveSince()
	err = c.cfg.DB.QueryRowContext(ctx, `SELECT s.process_id, s.replica_id FROM endpoint_sessions s
		JOIN replicas r ON r.id = s.replica_id
		WHERE s.endpoint_id = ? AND s.relay AND s.replica_id <> ? AND r.seen_at >= ?
		ORDER BY random() LIMIT 1`, endpointID, c.id, live).Scan(&process, &replica)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	return process, replica, err == nil, err
}

// RelayDial asks replica to have the endpoint's process set up the relayed
// tunnel t (which names where to dial back).
func (c *Cluster) RelayDial(ctx context.Context, replica, endpointID, process string, t endpointproto.Tunnel) error {
	return c.notify(ctx, replica, message{Type: "dial", InstanceID: endpointID, Process: process, Tunnel: &t})
}
