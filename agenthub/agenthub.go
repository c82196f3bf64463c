// Package agenthub keeps the server's side of every connected agent: it
// proves each agent's identity, records what the agent reports, and
// delivers key records to an agent, waiting for its acknowledgement.
package agenthub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/postern-dev/postern/agentproto"
	"github.com/postern-dev/postern/keyrecord"
)

// Callbacks connect the hub to the rest of the server.
type Callbacks struct {
	// KeyFor returns the agent public key registered for an instance, or
	// an error when the instance is unknown or may not connect.
	KeyFor func(ctx context.Context, instanceID string) (ed25519.PublicKey, error)
	// Connected is called after a successful handshake with the first
	// report; Report after each later report; Heartbeat on each heartbeat;
	// Disconnected when the session ends.
	Connected    func(ctx context.Context, instanceID string, r agentproto.Report) error
	Report       func(ctx context.Context, instanceID string, r agentproto.Report) error
	Heartbeat    func(ctx context.Context, instanceID string, at time.Time) error
	Disconnected func(instanceID string)
	// Refused is called when an agent fails the handshake (for the audit).
	Refused func(claimedID string, err error)
}

// Hub tracks live agent sessions.
type Hub struct {
	cb                Callbacks
	log               *slog.Logger
	heartbeatInterval time.Duration
	now               func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
}

// New returns a hub. Agents are asked to send a heartbeat every interval.
func New(cb Callbacks, heartbeatInterval time.Duration, logger *slog.Logger) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{cb: cb, log: logger, heartbeatInterval: heartbeatInterval, now: time.Now, sessions: map[string]*session{}}
}

type session struct {
	instanceID string
	conn       *agentproto.Conn
	mu         sync.Mutex
	pending    map[string]chan agentproto.Ack
	closed     chan struct{}
}

// ErrNotConnected means the instance's agent has no live session here.
var ErrNotConnected = errors.New("agent not connected")

// ErrRetired, returned (wrapped) by the Heartbeat or Report callback, ends
// the session: the instance may no longer be served (it was deregistered).
var ErrRetired = errors.New("instance retired")

// deadliner is implemented by connections that support deadlines.
type deadliner interface{ SetDeadline(time.Time) error }

// Serve runs one agent session on rwc until it ends or ctx is done. It
// always closes rwc.
func (h *Hub) Serve(ctx context.Context, rwc io.ReadWriteCloser) error {
	conn := agentproto.NewConn(rwc)
	defer conn.Close()
	if d, ok := rwc.(deadliner); ok {
		_ = d.SetDeadline(h.now().Add(15 * time.Second))
	}
	hello, err := agentproto.ServerHandshake(conn, h.now(), func(id string) (ed25519.PublicKey, error) {
		return h.cb.KeyFor(ctx, id)
	})
	if err != nil {
		claimed := ""
		if hello != nil {
			claimed = hello.InstanceID
		}
		if h.cb.Refused != nil {
			h.cb.Refused(claimed, err)
		}
		conn.Fail("identity not proven")
		return err
	}
	if d, ok := rwc.(deadliner); ok {
		_ = d.SetDeadline(time.Time{})
	}
	id := hello.InstanceID
	if err := h.cb.Connected(ctx, id, hello.Report); err != nil {
		conn.Fail("cannot register the connection: " + err.Error())
		return err
	}
	// Register before the welcome: once the agent is told it is in, a
	// push must find it.
	s := &session{instanceID: id, conn: conn, pending: map[string]chan agentproto.Ack{}, closed: make(chan struct{})}
	h.mu.Lock()
	old := h.sessions[id]
	h.sessions[id] = s
	h.mu.Unlock()
	if old != nil {
		// The agent reconnected before its old connection was seen dead.
		old.conn.Close()
	}
	if err := conn.Send(agentproto.TypeWelcome, "", agentproto.Welcome{InstanceID: id, HeartbeatInterval: h.heartbeatInterval}); err != nil {
		h.drop(s)
		return err
	}
	h.log.Info("agent connected", "instance", id, "hostname", hello.Report.Hostname)

	// Close the connection when ctx ends so that Recv returns.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	err = h.readLoop(ctx, s)

	h.drop(s)
	h.log.Info("agent disconnected", "instance", id, "err", err)
	return err
}

// drop ends a session's registration.
func (h *Hub) drop(s *session) {
	h.mu.Lock()
	if h.sessions[s.instanceID] == s {
		delete(h.sessions, s.instanceID)
	}
	h.mu.Unlock()
	close(s.closed)
	if h.cb.Disconnected != nil {
		h.cb.Disconnected(s.instanceID)
	}
}

func (h *Hub) readLoop(ctx context.Context, s *session) error {
	for {
		env, err := s.conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch env.Type {
		case agentproto.TypeHeartbeat:
			if h.cb.Heartbeat != nil {
				if err := h.cb.Heartbeat(ctx, s.instanceID, h.now()); errors.Is(err, ErrRetired) {
					return err
				} else if err != nil {
					h.log.Warn("recording heartbeat failed", "instance", s.instanceID, "err", err)
				}
			}
		case agentproto.TypeReport:
			var r agentproto.Report
			if err := env.Decode(&r); err != nil {
				return err
			}
			if h.cb.Report != nil {
				if err := h.cb.Report(ctx, s.instanceID, r); errors.Is(err, ErrRetired) {
					return err
				} else if err != nil {
					h.log.Warn("recording report failed", "instance", s.instanceID, "err", err)
				}
			}
		case agentproto.TypeAck:
			var a agentproto.Ack
			if err := env.Decode(&a); err != nil {
				return err
			}
			s.mu.Lock()
			ch := s.pending[env.ID]
			delete(s.pending, env.ID)
			s.mu.Unlock()
			if ch != nil {
				ch <- a
			}
		default:
			h.log.Warn("agent sent an unexpected message", "instance", s.instanceID, "type", env.Type)
		}
	}
}

// Connected reports whether an agent session for id is live here.
func (h *Hub) Connected(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id] != nil
}

// Push delivers rec to the instance's agent and waits until the agent has
// acknowledged it, ctx ends, or the session ends. An agent that refuses
// the record answers an error.
func (h *Hub) Push(ctx context.Context, instanceID string, rec keyrecord.Signed) error {
	h.mu.Lock()
	s := h.sessions[instanceID]
	h.mu.Unlock()
	if s == nil {
		return ErrNotConnected
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ch := make(chan agentproto.Ack, 1)
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if err := s.conn.Send(agentproto.TypePush, id, agentproto.Push{Record: rec}); err != nil {
		return fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	select {
	case a := <-ch:
		if a.Error != "" {
			return fmt.Errorf("agent refused the key: %s", a.Error)
		}
		return nil
	case <-s.closed:
		return fmt.Errorf("%w: the connection closed before the agent acknowledged", ErrNotConnected)
	case <-ctx.Done():
		return ctx.Err()
	}
}
