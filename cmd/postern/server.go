package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-dev/postern/api"
	"github.com/postern-dev/postern/console"
	"github.com/postern-dev/postern/server"
)

// ServerConfig is the file form of `postern server`'s settings (JSON);
// flags given on the command line win over the file.
type ServerConfig struct {
	Listen         string   `json:"listen"`
	DataDir        string   `json:"dataDir"`
	Region         string   `json:"region"`
	Store          string   `json:"store"`
	ReplicaName    string   `json:"replicaName"`
	AdvertiseURL   string   `json:"advertiseUrl"`
	TLSCert        string   `json:"tlsCert"`
	TLSKey         string   `json:"tlsKey"`
	Hosts          []string `json:"hosts"`
	ThrottleRate   float64  `json:"throttleRate"`
	ThrottleBurst  int      `json:"throttleBurst"`
	DigestInterval string   `json:"digestInterval"`
	ShutdownGrace  string   `json:"shutdownGrace"`
	DrainDelay     string   `json:"drainDelay"`
	LogLevel       string   `json:"logLevel"`
	LogFormat      string   `json:"logFormat"`
	KeyLifetime    string   `json:"keyLifetime"`
	AgentTimeout   string   `json:"agentTimeout"`
	// Console sessions: idle timeout and absolute lifetime.
	ConsoleIdleTimeout string `json:"consoleIdleTimeout"`
	ConsoleLifetime    string `json:"consoleLifetime"`
}

// DefaultServerConfig returns the defaults of DESIGN.md.
func (m *Main) DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Listen:         "127.0.0.1:7443",
		DataDir:        m.defaultDataDir(),
		Region:         "us-east-1",
		Store:          m.defaultStore(),
		ThrottleRate:   api.DefaultThrottle.Rate,
		ThrottleBurst:  api.DefaultThrottle.Burst,
		DigestInterval: "1m",
		ShutdownGrace:  "30s",
		DrainDelay:     "0s",
		LogLevel:       "info",
		LogFormat:      "text",
		KeyLifetime:    server.DefaultKeyLifetime.String(),
		AgentTimeout:   server.DefaultAgentTimeout.String(),

		ConsoleIdleTimeout: console.DefaultIdleTimeout.String(),
		ConsoleLifetime:    console.DefaultLifetime.String(),
	}
}

// defaultStore is $POSTERN_STORE, else the embedded SQLite database. An
// environment variable keeps a database password off the command line.
func (m *Main) defaultStore() string {
	if s := m.Getenv("POSTERN_STORE"); s != "" {
		return s
	}
	return "sqlite"
}

// defaultDataDir is $POSTERN_DATA_DIR, else the XDG data directory.
func (m *Main) defaultDataDir() string {
	if d := m.Getenv("POSTERN_DATA_DIR"); d != "" {
		return d
	}
	if d := m.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "postern")
	}
	return filepath.Join(m.Getenv("HOME"), ".local", "share", "postern")
}

// Validate checks the configuration and converts it for package server.
func (c ServerConfig) Validate() (server.Config, *slog.HandlerOptions, error) {
	out := server.Config{
		Listen: c.Listen, DataDir: c.DataDir, Region: c.Region, Store: c.Store, ReplicaName: c.ReplicaName, AdvertiseURL: c.AdvertiseURL,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey, Hosts: c.Hosts,
		Throttle: api.ThrottleConfig{Rate: c.ThrottleRate, Burst: c.ThrottleBurst},
	}
	var err error
	if out.DigestInterval, err = time.ParseDuration(c.DigestInterval); err != nil || out.DigestInterval < time.Second {
		return out, nil, fmt.Errorf("digest interval %q: must be a duration of at least 1s", c.DigestInterval)
	}
	if out.ShutdownGrace, err = time.ParseDuration(c.ShutdownGrace); err != nil || out.ShutdownGrace < 0 {
		return out, nil, fmt.Errorf("shutdown grace %q: must be a duration", c.ShutdownGrace)
	}
	if out.DrainDelay, err = time.ParseDuration(c.DrainDelay); err != nil || out.DrainDelay < 0 {
		return out, nil, fmt.Errorf("drain delay %q: must be a duration", c.DrainDelay)
	}
	if out.KeyLifetime, err = time.ParseDuration(c.KeyLifetime); err != nil || out.KeyLifetime < time.Second || out.KeyLifetime > time.Hour {
		return out, nil, fmt.Errorf("key lifetime %q: must be a duration between 1s and 1h", c.KeyLifetime)
	}
	if out.AgentTimeout, err = time.ParseDuration(c.AgentTimeout); err != nil || out.AgentTimeout < 4*time.Second {
		return out, nil, fmt.Errorf("agent timeout %q: must be a duration of at least 4s", c.AgentTimeout)
	}
	if out.Console.IdleTimeout, err = time.ParseDuration(c.ConsoleIdleTimeout); err != nil || out.Console.IdleTimeout < time.Second {
		return out, nil, fmt.Errorf("console idle timeout %q: must be a duration of at least 1s", c.ConsoleIdleTimeout)
	}
	if out.Console.Lifetime, err = time.ParseDuration(c.ConsoleLifetime); err != nil || out.Console.Lifetime < time.Second {
		return out, nil, fmt.Errorf("console lifetime %q: must be a duration of at least 1s", c.ConsoleLifetime)
	}
	switch {
	case c.AdvertiseURL != "" && !strings.HasPrefix(c.AdvertiseURL, "https://"):
		return out, nil, fmt.Errorf("advertise URL %q: want https://host:port", c.AdvertiseURL)
	case c.Store != "sqlite" && !server.IsPostgresURL(c.Store):
		return out, nil, fmt.Errorf("store: use sqlite or a postgres:// URL")
	case c.DataDir == "":
		return out, nil, fmt.Errorf("a data directory is required (--data-dir)")
	case !validRegion(c.Region):
		return out, nil, fmt.Errorf("region %q is not a region name like us-east-1", c.Region)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return out, nil, fmt.Errorf("--tls-cert and --tls-key go together")
	case c.ThrottleRate < 0 || c.ThrottleBurst < 0:
		return out, nil, fmt.Errorf("throttle rate and burst must not be negative")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return out, nil, fmt.Errorf("log format %q: use text or json", c.LogFormat)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return out, nil, fmt.Errorf("log level %q: use debug, info, warn or error", c.LogLevel)
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		out.DataDir = abs
	}
	return out, &slog.HandlerOptions{Level: level}, nil
}

func validRegion(r string) bool {
	parts := strings.Split(r, "-")
	if len(parts) < 3 || len(r) > 32 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for _, ch := range p {
			if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9') {
				return false
			}
		}
	}
	return true
}

func runServer(ctx context.Context, m *Main, args []string) error {
	cfg := m.DefaultServerConfig()
	fs := m.newFlagSet("server", "server [flags]",
		"postern server --data-dir ./postern-data --listen 127.0.0.1:7443\n"+
			"eval \"$(postern env --data-dir ./postern-data)\" && aws ec2 describe-vpcs")
	configFile := fs.String("config", "", "JSON config `file` (keys as the flags, in camelCase); flags win")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "`address` to serve HTTPS on")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "`directory` for the database, keys, certificates and admin credentials (env POSTERN_DATA_DIR)")
	fs.StringVar(&cfg.Region, "region", cfg.Region, "AWS region name this server answers as")
	fs.StringVar(&cfg.Store, "store", cfg.Store, "storage: sqlite (embedded, in the data dir) or a postgres://user@host/db `URL` shared by replicas (env POSTERN_STORE; put the password in PGPASSWORD or ~/.pgpass, not here)")
	fs.StringVar(&cfg.ReplicaName, "replica-name", "", "this replica's name in the replica label of /metrics (default: the host name)")
	fs.StringVar(&cfg.AdvertiseURL, "advertise-url", "", "with replicas: the `URL` where endpoint processes reach this replica itself, not the load balancer (default: the URL it listens on)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate `file` to serve instead of the generated one")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	hosts := fs.String("hosts", "", "comma-separated extra DNS names or IPs for the generated certificate")
	fs.Float64Var(&cfg.ThrottleRate, "throttle-rate", cfg.ThrottleRate, "requests per second allowed per access key (0: unlimited)")
	fs.IntVar(&cfg.ThrottleBurst, "throttle-burst", cfg.ThrottleBurst, "burst allowed per access key")
	fs.StringVar(&cfg.DigestInterval, "digest-interval", cfg.DigestInterval, "how often the server signs an audit digest")
	fs.StringVar(&cfg.ShutdownGrace, "shutdown-grace", cfg.ShutdownGrace, "how long in-flight requests may finish after SIGTERM")
	fs.StringVar(&cfg.DrainDelay, "drain-delay", cfg.DrainDelay, "after SIGTERM, keep serving this long with /readyz failing (behind a load balancer: a few seconds)")
	fs.StringVar(&cfg.KeyLifetime, "key-lifetime", cfg.KeyLifetime, "how long a pushed SSH public key stays usable")
	fs.StringVar(&cfg.AgentTimeout, "agent-timeout", cfg.AgentTimeout, "how long an agent may be silent before its instance is marked stopped")
	fs.StringVar(&cfg.ConsoleIdleTimeout, "console-idle-timeout", cfg.ConsoleIdleTimeout, "a web console session unused this long ends")
	fs.StringVar(&cfg.ConsoleLifetime, "console-lifetime", cfg.ConsoleLifetime, "a web console session this old ends, however active")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	if *configFile != "" {
		if err := applyConfigFile(fs.FlagSet, *configFile, &cfg); err != nil {
			return err
		}
	}
	if *hosts != "" {
		cfg.Hosts = append(cfg.Hosts, strings.Split(*hosts, ",")...)
	}
	scfg, logOpts, err := cfg.Validate()
	if err != nil {
		return err
	}
	var h slog.Handler = slog.NewTextHandler(m.Stderr, logOpts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(m.Stderr, logOpts)
	}
	logger := slog.New(h)
	m.defaultGCPercent(serverGCPercent)
	srv, err := server.Open(ctx, scfg, logger, func(msg string) { fmt.Fprintln(m.Stdout, msg) })
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "Postern server listening on %s (region %s, account %s)\n", srv.Info().URL, srv.Info().Region, srv.Info().Account)
	return srv.Serve(ctx)
}

// serverGCPercent is the server's garbage-collection target when GOGC is
// not set. Its live heap is small, so at Go's default of 100 it collects
// often: under sustained key pushes GOGC=400 cut its CPU per push by about
// a seventh for about 15 MB more resident memory (docs/deployment.md).
const serverGCPercent = 400

// applyConfigFile loads a JSON config file under the flags: a value from
// the file is used only where the flag was not set on the command line.
func applyConfigFile(fs *flag.FlagSet, path string, cfg *ServerConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	flagged := *cfg
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("config file %s: %v", path, err)
	}
	// Restore what the command line said.
	for name, dst := range map[string]func(){
		"listen":               func() { cfg.Listen = flagged.Listen },
		"data-dir":             func() { cfg.DataDir = flagged.DataDir },
		"region":               func() { cfg.Region = flagged.Region },
		"store":                func() { cfg.Store = flagged.Store },
		"replica-name":         func() { cfg.ReplicaName = flagged.ReplicaName },
		"advertise-url":        func() { cfg.AdvertiseURL = flagged.AdvertiseURL },
		"tls-cert":             func() { cfg.TLSCert = flagged.TLSCert },
		"tls-key":              func() { cfg.TLSKey = flagged.TLSKey },
		"throttle-rate":        func() { cfg.ThrottleRate = flagged.ThrottleRate },
		"throttle-burst":       func() { cfg.ThrottleBurst = flagged.ThrottleBurst },
		"digest-interval":      func() { cfg.DigestInterval = flagged.DigestInterval },
		"shutdown-grace":       func() { cfg.ShutdownGrace = flagged.ShutdownGrace },
		"log-level":            func() { cfg.LogLevel = flagged.LogLevel },
		"log-format":           func() { cfg.LogFormat = flagged.LogFormat },
		"key-lifetime":         func() { cfg.KeyLifetime = flagged.KeyLifetime },
		"drain-delay":          func() { cfg.DrainDelay = flagged.DrainDelay },
		"agent-timeout":        func() { cfg.AgentTimeout = flagged.AgentTimeout },
		"console-idle-timeout": func() { cfg.ConsoleIdleTimeout = flagged.ConsoleIdleTimeout },
		"console-lifetime":     func() { cfg.ConsoleLifetime = flagged.ConsoleLifetime },
	} {
		if set[name] {
			dst()
		}
	}
	return nil
}
