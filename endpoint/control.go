package endpoint

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/coder/websocket"

	"github.com/postern-dev/postern/endpointproto"
)

// Control connection timing.
const (
	controlPingInterval = 30 * time.Second
	controlDialTimeout  = 15 * time.Second
	// healthyControl is how long a control connection must last for the
	// next reconnection to start from the smallest backoff step.
	healthyControl = time.Minute
	// maxControlMessage bounds one control message.
	maxControlMessage = 1 << 20
)

// control keeps the control connection open until ctx ends (it returns
// nil) or the server deletes the endpoint (it returns ErrDeleted, the
// tunnels closed and the server told).
func (e *Endpoint) control(ctx context.Context) error {
	b := newBackoff(e.cfg.MaxBackoff)
	for {
		start := time.Now()
		err := e.controlSession(ctx)
		if errors.Is(err, ErrDeleted) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > healthyControl {
			b.reset()
		}
		if permanent(err) {
			e.log.Error("the server refuses the control connection; retrying", "err", err)
		} else {
			e.log.Warn("control connection lost; reconnecting", "err", err)
		}
		if !b.wait(ctx) {
			return nil
		}
	}
}

// controlSession runs one control connection until it breaks, ctx ends or
// the endpoint is deleted.
func (e *Endpoint) controlSession(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, controlDialTimeout)
	c, err := e.srv.dial(dctx, endpointproto.ControlPath, url.Values{endpointproto.ParamProcess: {e.process}, endpointproto.ParamMode: {e.cfg.Mode}}, nil)
	cancel()
	var ce *callError
	if errors.As(err, &ce) && ce.Status == http.StatusGone {
		// Deleted while the control connection was down: nobody will
		// send the delete message; act on it all the same.
		e.log.Warn("the server says the endpoint was deleted", "message", ce.Message)
		e.deleted()
		return ErrDeleted
	}
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(maxControlMessage)
	server, _ := e.srv.base()
	e.log.Info("control connection open", "server", server)

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go e.pingControl(sctx, c)
	for {
		_, data, err := c.Read(sctx)
		if err != nil {
			if ctx.Err() != nil {
				c.Close(websocket.StatusGoingAway, ReasonShutdown)
			}
			return err
		}
		var m endpointproto.Control
		if err := json.Unmarshal(data, &m); err != nil {
			e.log.Warn("ignoring a control message that is not JSON", "err", err)
			continue
		}
		switch m.Type {
		case endpointproto.ControlSettings:
			if m.Settings == nil {
				e.log.Warn("ignoring a settings message without settings")
				continue
			}
			e.applySettings(*m.Settings)
			s, _ := e.current()
			e.log.Info("settings changed", "allowed_ports", s.AllowedPorts, "max_connections", s.MaxConnections,
				"max_tunnel_duration", s.MaxTunnelDuration)
		case endpointproto.ControlDial:
			if m.Dial == nil {
				e.log.Warn("ignoring a dial message without a tunnel")
				continue
			}
			e.relay(*m.Dial)
		case endpointproto.ControlDelete:
			e.deleted()
			msg, _ := json.Marshal(endpointproto.Control{Type: endpointproto.ControlDeleted})
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := c.Write(wctx, websocket.MessageText, msg); err != nil {
				e.log.Warn("cannot tell the server that every tunnel is closed", "err", err)
			}
			cancel()
			c.Close(websocket.StatusNormalClosure, ReasonDeleted)
			return ErrDeleted
		default:
			e.log.Warn("ignoring an unknown control message", "type", m.Type)
		}
	}
}

// pingControl pings the server so that a dead control connection is
// noticed and replaced; a failed ping closes the connection.
func (e *Endpoint) pingControl(ctx context.Context, c *websocket.Conn) {
	t := time.NewTicker(controlPingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, controlPingInterval)
		err := c.Ping(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.CloseNow()
			return
		}
	}
}
