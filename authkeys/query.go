package authkeys

import (
	"encoding/json"
	"errors"
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

// Query asks the agent at socket for user's records. The whole exchange,
// connect included, gives up after timeout.
func Query(socket, user string, timeout time.Duration) ([]keyrecord.Signed, error) {
	c, err := dialUnix(syscall.SOCK_STREAM, socket, time.Now().Add(timeout))
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

// unixConn is a connected unix socket whose reads, writes and connect
// each block at most until its deadline.
//
// The helper starts on every login attempt, so it talks to its sockets
// with plain system calls rather than through package net, whose set-up
// (the poller, its threads) costs more than the query itself. The
// descriptor stays blocking; the kernel's send and receive timeouts,
// set to the time left before each call, bound it.
type unixConn struct {
	f        *os.File
	fd       int // f's, for the timeouts
	deadline time.Time
}

// errDeadline is returned once a unixConn's deadline has passed.
var errDeadline = errors.New("timed out")

// dialUnix connects a unix socket of type typ (SOCK_STREAM, SOCK_DGRAM)
// to path, giving up at deadline.
func dialUnix(typ int, path string, deadline time.Time) (*unixConn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	// A stream connect waits while the listener's backlog is full, for at
	// most the send timeout. With a timeout set, the kernel does not
	// restart a connect that a signal (the runtime's, say) interrupted;
	// nothing is half done then, so it is simply tried again.
	for {
		if err = setTimeout(fd, syscall.SO_SNDTIMEO, deadline); err == nil {
			err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		}
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		syscall.Close(fd)
		if err == syscall.EAGAIN && typ == syscall.SOCK_STREAM {
			err = errDeadline
		}
		return nil, &os.PathError{Op: "connect", Path: path, Err: err}
	}
	// os.File reads and writes a blocking descriptor directly, without the
	// runtime's poller, and retries what a signal interrupts.
	return &unixConn{f: os.NewFile(uintptr(fd), path), fd: fd, deadline: deadline}, nil
}

// setTimeout sets the socket's send or receive timeout (opt) to the time
// left before deadline.
func setTimeout(fd, opt int, deadline time.Time) error {
	tv := syscall.NsecToTimeval(time.Until(deadline).Nanoseconds())
	if tv.Sec < 0 || tv.Sec == 0 && tv.Usec <= 0 {
		return errDeadline // a zero timeout would mean none at all
	}
	return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv)
}

func (c *unixConn) Read(p []byte) (int, error) {
	if err := setTimeout(c.fd, syscall.SO_RCVTIMEO, c.deadline); err != nil {
		return 0, err
	}
	return c.f.Read(p)
}

func (c *unixConn) Write(p []byte) (int, error) {
	if err := setTimeout(c.fd, syscall.SO_SNDTIMEO, c.deadline); err != nil {
		return 0, err
	}
	return c.f.Write(p)
}

// Close closes the socket.
func (c *unixConn) Close() error { return c.f.Close() }
