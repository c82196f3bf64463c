package server

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/cluster"
	"github.com/postern-dev/postern/pki"
	"github.com/postern-dev/postern/store/postgres"
	"github.com/postern-dev/postern/store/sqlite"
)

// IsPostgresURL reports whether store names a PostgreSQL database.
func IsPostgresURL(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// openStore opens the configured store. PostgreSQL may not be up yet
// when a replica starts (both come up together after a reboot): the server
// then keeps trying, saying so, until the database answers or ctx ends. A
// database it reaches but cannot use (a newer schema, a refused login) is
// an error at once.
func (s *Server) openStore(ctx context.Context) (postern.Store, error) {
	switch {
	case s.cfg.Store == "sqlite":
		st, err := sqlite.Open(ctx, filepath.Join(s.cfg.DataDir, dbFile), sqlite.Options{})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	case IsPostgresURL(s.cfg.Store):
		wait := 500 * time.Millisecond
		stopWaiting := func() {}
		defer func() { stopWaiting() }()
		for {
			st, err := postgres.Open(ctx, s.cfg.Store, postgres.Options{})
			if err == nil {
				return st, nil
			}
			if !errors.Is(err, postgres.ErrUnreachable) || ctx.Err() != nil {
				return nil, fmt.Errorf("open store: %w", err)
			}
			if wait == 500*time.Millisecond {
				stopWaiting = s.serveWhileWaiting()
			}
			s.log.Warn("waiting for the database", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("open store: %w", err)
			case <-time.After(wait):
			}
			wait = min(2*wait, 10*time.Second)
		}
	}
	return nil, fmt.Errorf("store %q is not supported; use sqlite or a postgres:// URL", redactStore(s.cfg.Store))
}

// redactStore hides anything after a scheme: a mistyped URL may hold a
// password.
func redactStore(store string) string {
	if scheme, _, ok := strings.Cut(store, "://"); ok {
		return scheme + "://…"
	}
	return store
}

// joinCluster joins the replicas that share the PostgreSQL store.
func (s *Server) joinCluster() (*cluster.Cluster, error) {
	dbs, ok := s.store.(interface{ DBs() (w, r *sql.DB) })
	if !ok {
		return nil, fmt.Errorf("the store cannot be shared by replicas")
	}
	w, _ := dbs.DBs()
	ctx, cancel := context.WithTimeout(s.baseCtx, 30*time.Second)
	defer cancel()
	c, err := cluster.New(s.baseCtx, ctx, cluster.Config{URL: s.cfg.Store, DB: w, Hub: s.hub, Logger: s.log,
		OnEndpointChange: s.onAnnouncedEndpointChange, OnRelayDial: s.onRelayDial})
	if err != nil {
		return nil, fmt.Errorf("join the cluster: %w", err)
	}
	s.log.Info("joined the cluster", "replica", c.ID())
	return c, nil
}

// serveWhileWaiting answers health checks while the server waits for its
// database, when it can: on a restart, with the certificate it served
// before (on a first start there is none yet, and nothing listens). /healthz
// is 200 and /readyz 503, so a load balancer sees a live replica that is
// not ready; anything else is 503. It returns the function that stops it,
// which frees the listen address for the real server.
func (s *Server) serveWhileWaiting() (stop func()) {
	certFile, keyFile := s.cfg.TLSCert, s.cfg.TLSKey
	if certFile == "" {
		certFile, keyFile = filepath.Join(s.cfg.DataDir, pki.CertFile), filepath.Join(s.cfg.DataDir, pki.KeyFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return func() {}
	}
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		s.log.Warn("cannot answer health checks while waiting for the database", "err", err)
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "waiting for the database", http.StatusServiceUnavailable)
	})
	hs := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.ServeTLS(l, "", "")
	}()
	s.log.Info("answering health checks while waiting for the database", "address", l.Addr().String())
	return func() {
		hs.Close()
		<-done
	}
}
