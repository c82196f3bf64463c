package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/postern-dev/postern/authkeys"
	"github.com/postern-dev/postern/keyrecord"
)

// DefaultSocket is where the agent answers the sshd helper.
const DefaultSocket = authkeys.DefaultSocket

// HelperRequest asks for the records of one OS user.
type HelperRequest = authkeys.Request

// HelperResponse lists the live signed records for that user.
type HelperResponse = authkeys.Response

// socketServer answers the sshd helper. Only root and the helper's own
// user (AuthorizedKeysCommandUser) may ask: the socket file is 0660 owned
// by root and the helper's group, and every peer's uid is checked again
// with SO_PEERCRED.
type socketServer struct {
	path      string
	helperUID int // -1: root only
	helperGID int // -1: leave the group alone
	keys      *keyStore
	log       *slog.Logger
}

func (s *socketServer) listen() (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return nil, err
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Create the socket with no permissions, then open it up to exactly
	// root and the helper's group: no moment where anyone else could
	// connect.
	old := syscall.Umask(0o777)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if s.helperGID >= 0 {
		if err := os.Chown(s.path, 0, s.helperGID); err != nil && os.Geteuid() == 0 {
			l.Close()
			return nil, err
		}
	}
	if err := os.Chmod(s.path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (s *socketServer) serve(ctx context.Context, l *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go s.handle(c)
	}
}

func (s *socketServer) handle(c *net.UnixConn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	uid, err := peerUID(c)
	if err != nil || !(uid == 0 || uid == s.helperUID && s.helperUID >= 0) {
		s.log.Warn("refused a helper connection from an unexpected user", "uid", uid, "err", err)
		return
	}
	var req HelperRequest
	if err := json.NewDecoder(bufio.NewReader(io.LimitReader(c, 4096))).Decode(&req); err != nil || req.User == "" {
		return
	}
	_ = json.NewEncoder(c).Encode(HelperResponse{Records: s.keys.forUser(req.User)})
}

// peerUID returns the uid of the process on the other end of c.
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// QueryAgent asks the agent at socket for user's records (used by the
// helper). The whole exchange, connect included, gives up after timeout.
func QueryAgent(socket, user string, timeout time.Duration) ([]keyrecord.Signed, error) {
	return authkeys.Query(socket, user, timeout)
}
