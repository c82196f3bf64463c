package consoleterm

import (
	"encoding/json"
	"fmt"
)

// The terminal's WebSocket protocol. Binary frames carry terminal bytes
// both ways, as they are (output need not be UTF-8). Text frames carry
// JSON control messages: the browser sends Resize, the server sends
// Status and Error.

// Session states of a Status message.
const (
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateClosed     = "closed"
)

// Status tells the browser where the session stands.
type Status struct {
	Type    string `json:"type"` // "status"
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// Error tells the browser why the session could not start; a close
// follows.
type Error struct {
	Type    string `json:"type"` // "error"
	Code    string `json:"code"`
	Message string `json:"message"`
	// Action is, for AccessDenied, the policy action refused:
	// ec2-instance-connect:SendSSHPublicKey (the key push) or
	// ec2-instance-connect:OpenTunnel (the tunnel through an endpoint).
	Action string `json:"action,omitempty"`
}

// Resize is the browser's new terminal size.
type Resize struct {
	Type string `json:"type"` // "resize"
	Cols int    `json:"cols"`
	Rows int    `json:"rows"`
}

// Terminal sizes outside these bounds are refused.
const (
	maxCols = 1000
	maxRows = 1000
)

func checkSize(cols, rows int) error {
	if cols < 1 || cols > maxCols || rows < 1 || rows > maxRows {
		return fmt.Errorf("terminal size %dx%d is out of range (1 to %d columns, 1 to %d rows)", cols, rows, maxCols, maxRows)
	}
	return nil
}

// parseControl decodes a text frame from the browser.
func parseControl(b []byte) (Resize, error) {
	var m Resize
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("a text frame must be a JSON control message")
	}
	if m.Type != "resize" {
		return m, fmt.Errorf("unknown control message type %q; the browser sends only resize", truncate(m.Type, 32))
	}
	return m, checkSize(m.Cols, m.Rows)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
