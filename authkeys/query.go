package authkeys

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/postern-dev/postern/keyrecord"
)

// Request asks the agent for the records of one OS user.
type Request struct {
	User string `json:"user"`
}

// Response lists the live signed records for that user.
type Response struct {
	Records []keyrecord.Signed `json:"records"`
}

// Query asks the agent at socket for user's records. It gives up after
// timeout.
func Query(socket, user string, timeout time.Duration) ([]keyrecord.Signed, error) {
	c, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(Request{User: user}); err != nil {
		return nil, err
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("agent answered nothing usable: %w", err)
	}
	return resp.Records, nil
}
