package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/cluster"
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
		for {
			st, err := postgres.Open(ctx, s.cfg.Store, postgres.Options{})
			if err == nil {
				return st, nil
			}
			if !errors.Is(err, postgres.ErrUnreachable) || ctx.Err() != nil {
				return nil, fmt.Errorf("open store: %w", err)
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
