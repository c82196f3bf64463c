// Package devsshd is a small SSH server for demos and development: it is
// what `postern dev` runs as its demo instance when OpenSSH's sshd cannot
// (the process is not root, or sshd cannot be installed). It is not a
// production sshd and must not be used as one.
//
// It follows sshd's AuthorizedKeysCommand contract, so a login exercises
// the real Postern path: for every offered key it runs
// `postern authorized-keys --config HELPER.json USER FINGERPRINT` and
// accepts the key only when a printed line carries that key with an
// expiry-time still in the future. Without root it cannot switch users,
// so the only user who may log in is the one the process runs as. Sessions
// run the user's shell, with a real PTY when the client asks for one.
package devsshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultHelperTimeout bounds one helper run. The helper itself gives up
// within 5 s, as it does for sshd.
const DefaultHelperTimeout = 10 * time.Second

// loginGrace bounds the handshake and authentication, as sshd's
// LoginGraceTime does.
const loginGrace = 2 * time.Minute

// Config configures a Server.
type Config struct {
	// HostKeyDir holds ssh_host_ed25519_key and ssh_host_ed25519_key.pub,
	// the names sshd uses, so that whatever reports sshd's host keys
	// reports this one. They are created when absent.
	HostKeyDir string
	// Helper is the postern binary, run as
	// `Helper authorized-keys --config HelperConfig USER FINGERPRINT`.
	Helper       string
	HelperConfig string
	// HelperTimeout bounds one helper run (DefaultHelperTimeout if zero).
	HelperTimeout time.Duration
	// Shell, when set, replaces the user's login shell.
	Shell  string
	Logger *slog.Logger
	// Now is the clock expiry-time is checked against (time.Now if nil).
	Now func() time.Time
}

// Server is an SSH server for the user the process runs as.
type Server struct {
	cfg     Config
	log     *slog.Logger
	hostKey ssh.Signer
	ssh     *ssh.ServerConfig
	account account
}

// account is the one user who may log in.
type account struct {
	name, home, shell string
	uid               int
}

// New loads or creates the host key and prepares a server.
func New(cfg Config) (*Server, error) {
	if cfg.Helper == "" || cfg.HelperConfig == "" {
		return nil, errors.New("devsshd: Helper and HelperConfig are required")
	}
	if cfg.HelperTimeout == 0 {
		cfg.HelperTimeout = DefaultHelperTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	hostKey, err := LoadOrCreateHostKey(cfg.HostKeyDir)
	if err != nil {
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("devsshd: who am I: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	shell := cfg.Shell
	if shell == "" {
		shell = loginShell(u.Uid)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hostKey: hostKey,
		account: account{name: u.Username, home: u.HomeDir, shell: shell, uid: uid}}
	s.ssh = &ssh.ServerConfig{
		PublicKeyCallback:         s.checkKey,
		VerifiedPublicKeyCallback: s.loggedIn,
		ServerVersion:             "SSH-2.0-postern-devsshd",
	}
	s.ssh.AddHostKey(hostKey)
	return s, nil
}

// HostKey is the server's public host key.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey.PublicKey() }

// User is the name of the only user who may log in.
func (s *Server) User() string { return s.account.name }

// Serve accepts connections on l until ctx is done or l fails. It closes
// l, and on return every connection it accepted is closed and every
// session's processes are killed.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var conns sync.WaitGroup
	defer conns.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close()
			return err
		}
		conns.Go(func() {
			if err := s.ServeConn(ctx, c); err != nil {
				s.log.Info("ssh connection ended", "remote", c.RemoteAddr(), "err", err)
			}
		})
	}
}

// ServeConn speaks SSH on c until the client leaves or ctx is done.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(loginGrace))
	conn, chans, reqs, err := ssh.NewServerConn(c, s.ssh)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = c.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs) // keepalives get "no"; forwarding is not offered
	var sessions sync.WaitGroup
	defer sessions.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "this development server serves sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		sessions.Go(func() { s.serveSession(conn, ch, creqs) })
	}
	return nil
}
