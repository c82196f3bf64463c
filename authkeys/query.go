package authkeys

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"syscall"
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

// Query asks the agent at socket for user's records. Each read and write
// gives up after timeout.
func Query(socket, user string, timeout time.Duration) ([]keyrecord.Signed, error) {
	c, err := dialUnix(syscall.SOCK_STREAM, socket, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(Request{User: user}); err != nil {
		return nil, err
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("agent answered nothing usable: %w", err)
	}
	return resp.Records, nil
}

// dialUnix connects a unix socket of type typ (SOCK_STREAM, SOCK_DGRAM)
// to path. Its reads and writes block, each for at most timeout.
//
// The helper starts on every login attempt, so it talks to its sockets
// with plain system calls rather than through package net, whose set-up
// (the poller, its threads) costs more than the query itself. A connect
// to a unix socket completes at once unless the listener's backlog is
// full; the helper's watchdog bounds that case.
func dialUnix(typ int, path string, timeout time.Duration) (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	// Connect before the timeouts are set: with SO_SNDTIMEO set, the
	// kernel would not restart a connect interrupted by the runtime's
	// signals.
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "connect", Path: path, Err: err}
	}
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			syscall.Close(fd)
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	// A blocking descriptor: os.File reads and writes it directly (and
	// retries what a signal interrupts) without the runtime's poller.
	return os.NewFile(uintptr(fd), path), nil
}
