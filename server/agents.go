package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/agenthub"
	"github.com/postern-dev/postern/agentproto"
	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
)

// newHub wires the agent hub to the authority and the audit trail.
func (s *Server) newHub() *agenthub.Hub {
	return agenthub.New(agenthub.Callbacks{
		KeyFor: s.auth.AgentKey,
		Connected: func(ctx context.Context, id string, r agentproto.Report) error {
			if err := s.auth.AgentReported(ctx, id, r); err != nil {
				return err
			}
			if s.cluster != nil {
				// Other replicas route pushes for this agent here.
				return s.cluster.Hold(ctx, id)
			}
			return nil
		},
		Disconnected: func(id string) {
			if s.cluster != nil {
				if err := s.cluster.Release(context.WithoutCancel(s.baseCtx), id); err != nil {
					s.log.Warn("cannot release an agent session in the cluster", "instance", id, "err", err)
				}
			}
		},
		Report: func(ctx context.Context, id string, r agentproto.Report) error {
			return retired(s.auth.AgentReported(ctx, id, r))
		},
		Heartbeat: func(ctx context.Context, id string, at time.Time) error {
			return retired(s.auth.AgentHeartbeat(ctx, id, at))
		},
		Refused: func(claimed string, err error) {
			s.recordAgentEvent(context.Background(), "AgentConnect", claimed, "", "AccessDenied", "agent identity not proven")
		},
	}, s.cfg.HeartbeatInterval, s.log)
}

// retired marks the authority's refusal of a terminated instance's agent
// so that the hub ends its session.
func retired(err error) error {
	if postern.IsKind(err, postern.KindConflict) {
		return fmt.Errorf("%w: %w", agenthub.ErrRetired, err)
	}
	return err
}

// recordAgentEvent audits something an agent did.
func (s *Server) recordAgentEvent(ctx context.Context, name, instanceID, sourceIP, code, msg string) {
	ev := &audit.Event{
		EventSource: "ssm.amazonaws.com", EventName: name, AWSRegion: s.cfg.Region, SourceIPAddress: sourceIP,
		UserIdentity:      audit.UserIdentity{Type: "Unknown", PrincipalID: instanceID, AccountID: s.info.Account},
		RequestParameters: map[string]any{"instanceId": instanceID},
		ErrorCode:         code, ErrorMessage: msg, EventType: "AwsApiCall", RecipientAccountID: s.info.Account,
	}
	if instanceID != "" {
		ev.Resources = []audit.Resource{{ARN: s.auth.EC2ARN("instance", instanceID), AccountID: s.info.Account, Type: "AWS::EC2::Instance"}}
	}
	if _, err := s.trail.Record(ctx, ev); err != nil {
		s.log.Error("audit write failed for an agent event", "event", name, "err", err)
	}
}

// handleRegister registers a host with an activation. It is not SigV4
// signed: the activation code is the credential.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req agent.RegisterRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	ip := sourceAddr(r)
	params := map[string]any{"activationId": req.ActivationID, "hostname": req.Report.Hostname}
	if err != nil {
		s.writeAgentError(w, r, params, postern.CodedErrorf(postern.KindInvalid, "ValidationException", "the registration request is not valid JSON"), ip)
		return
	}
	inst, err := s.auth.RegisterAgent(r.Context(), authority.Registration{
		ActivationID: req.ActivationID, ActivationCode: req.ActivationCode, AgentKey: req.PublicKey, Report: req.Report,
	})
	if err != nil {
		s.writeAgentError(w, r, params, err, ip)
		return
	}
	ev := &audit.Event{
		EventSource: "ssm.amazonaws.com", EventName: "RegisterManagedInstance", AWSRegion: s.cfg.Region, SourceIPAddress: ip,
		UserAgent: r.UserAgent(), UserIdentity: audit.UserIdentity{Type: "Unknown", PrincipalID: inst.ID, AccountID: s.info.Account},
		RequestParameters: params, ResponseElements: map[string]any{"instanceId": inst.ID},
		Resources: []audit.Resource{{ARN: s.auth.EC2ARN("instance", inst.ID), AccountID: s.info.Account, Type: "AWS::EC2::Instance"}},
		EventType: "AwsApiCall", RecipientAccountID: s.info.Account,
	}
	if _, err := s.trail.Record(r.Context(), ev); err != nil {
		// The instance exists but unaudited success is not allowed:
		// terminate it again and fail.
		_ = s.auth.Deregister(context.WithoutCancel(r.Context()), inst.ID)
		s.writeAgentError(w, r, nil, err, "")
		return
	}
	writeJSON(w, http.StatusOK, agent.RegisterResponse{
		InstanceID: inst.ID, KeySigningKey: s.ksk.Public().(ed25519.PublicKey), Region: s.cfg.Region, Account: s.info.Account,
	})
}

func (s *Server) writeAgentError(w http.ResponseWriter, r *http.Request, params map[string]any, err error, ip string) {
	code, status, msg := "ServiceException", http.StatusInternalServerError, "internal error"
	var pe *postern.Error
	if errors.As(err, &pe) && pe.Kind != postern.KindInternal && pe.Kind != postern.KindOther {
		code, msg, status = pe.Code, pe.Message, http.StatusBadRequest
		if code == "" {
			code = "ValidationException"
		}
		if pe.Kind == postern.KindDenied {
			status = http.StatusForbidden
		}
	} else {
		s.log.Error("agent registration failed", "err", err)
	}
	if params != nil {
		ev := &audit.Event{
			EventSource: "ssm.amazonaws.com", EventName: "RegisterManagedInstance", AWSRegion: s.cfg.Region, SourceIPAddress: ip,
			UserAgent: r.UserAgent(), UserIdentity: audit.UserIdentity{Type: "Unknown", AccountID: s.info.Account},
			RequestParameters: params, ErrorCode: code, ErrorMessage: msg, EventType: "AwsApiCall", RecipientAccountID: s.info.Account,
		}
		if _, aerr := s.trail.Record(r.Context(), ev); aerr != nil {
			s.log.Error("audit write failed", "err", aerr)
			code, status, msg = "ServiceException", http.StatusInternalServerError, "internal error"
		}
	}
	writeJSON(w, status, agent.RegisterError{Code: code, Message: msg})
}

// handleConnect accepts an agent's WebSocket and runs its session.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{agent.Subprotocol}})
	if err != nil {
		return
	}
	if c.Subprotocol() != agent.Subprotocol {
		c.Close(websocket.StatusPolicyViolation, "subprotocol "+agent.Subprotocol+" required")
		return
	}
	c.SetReadLimit(agentproto.MaxMessage + 4)
	ctx := s.baseCtx
	conn := websocket.NetConn(ctx, c, websocket.MessageBinary)
	if err := s.hub.Serve(ctx, conn); err != nil && ctx.Err() == nil {
		s.log.Debug("agent session ended", "remote", r.RemoteAddr, "err", err)
	}
}

// reapSilentAgents marks instances whose agents fell silent as stopped.
func (s *Server) reapSilentAgents(ctx context.Context) {
	t := time.NewTicker(s.cfg.AgentTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ids, err := s.auth.StopSilent(ctx, now.Add(-s.cfg.AgentTimeout))
			if err != nil {
				s.log.Warn("marking silent instances stopped failed", "err", err)
			}
			for _, id := range ids {
				s.log.Info("instance stopped: its agent fell silent", "instance", id)
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func sourceAddr(r *http.Request) string { return api.SourceIP(r).String() }
