package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/postern-dev/postern/endpoint"
	"github.com/postern-dev/postern/endpointproto"
)

// credentialEnv holds the endpoint's join credential when no file is given.
const credentialEnv = "POSTERN_ENDPOINT_CREDENTIAL"

// EndpointRunConfig is what `postern endpoint run` is told, before it is
// checked and turned into an endpoint.Config.
type EndpointRunConfig struct {
	Server, CredentialFile, CABundle string
	Mode, Listen, Advertise          string
	TLSCert, TLSKey                  string
	Grace, DialTimeout               time.Duration
	LogLevel                         string
}

// endpointGCPercent is the endpoint's garbage-collection target when GOGC
// is not set. An endpoint holds thousands of mostly idle tunnels whose
// buffers are pooled: collecting at 30% growth rather than Go's 100% keeps
// its resident memory near what the tunnels really use, at little CPU
// cost.
const endpointGCPercent = 30

func runEndpointRun(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("endpoint run",
		"endpoint run --server URL --credential-file FILE [--ca-bundle FILE] [--mode listen|relay] [--listen ADDR] "+
			"[--advertise HOST:PORT] [--tls-cert FILE --tls-key FILE] [--grace 30s] [--dial-timeout 10s]",
		"postern endpoint run --server https://postern.example:7443 --credential-file /etc/postern/endpoint.credential \\\n"+
			"    --ca-bundle ca.pem --listen 0.0.0.0:443 --advertise eice.corp.example\n"+
			"POSTERN_ENDPOINT_CREDENTIAL=eice-…  postern endpoint run --server https://postern.example:7443 --mode relay")
	var c EndpointRunConfig
	fs.StringVar(&c.Server, "server", "", "the server's `URL`; several replicas' URLs separated by commas (the endpoint moves to the next when its server cannot be reached)")
	fs.StringVar(&c.CredentialFile, "credential-file", "", "`file` holding the join credential that 'endpoint create' printed; env "+credentialEnv+" instead")
	fs.StringVar(&c.CABundle, "ca-bundle", "", "PEM `file` of the CA that signed the server's certificate")
	fs.StringVar(&c.Mode, "mode", endpointproto.ModeListen, "listen: serve tunnels where clients reach this host; relay: listen on nothing, dial out to the server for each tunnel")
	fs.StringVar(&c.Listen, "listen", endpoint.DefaultListen, "listen mode: the `address` the HTTPS server binds")
	fs.StringVar(&c.Advertise, "advertise", "", "the `host:port` clients connect to, the endpoint's DnsName; listen mode: default the listen address, with this host's name for an unspecified IP; relay mode: the server's address as clients know it, default --server's")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "listen mode: PEM certificate `file` to serve instead of one issued by the server's CA")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	fs.DurationVar(&c.Grace, "grace", endpoint.DefaultGrace, "on SIGTERM, how long live tunnels may go on before they are closed")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", endpoint.DefaultDialTimeout, "how long a target has to accept a connection")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	cfg, err := c.endpointConfig(m.Getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return usagef("endpoint run: --log-level %q: use debug, info, warn or error", c.LogLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level}))
	e, err := endpoint.New(cfg)
	if err != nil {
		return err
	}
	m.defaultGCPercent(endpointGCPercent)
	return e.Run(ctx)
}

// endpointConfig checks c and reads the files it names.
func (c EndpointRunConfig) endpointConfig(getenv func(string) string) (endpoint.Config, error) {
	var cfg endpoint.Config
	if c.Server == "" {
		return cfg, usagef("endpoint run: --server is required")
	}
	if c.Mode != endpointproto.ModeListen && c.Mode != endpointproto.ModeRelay {
		return cfg, usagef("endpoint run: --mode %q: use listen or relay", c.Mode)
	}
	if c.Grace <= 0 || c.DialTimeout <= 0 {
		return cfg, usagef("endpoint run: --grace and --dial-timeout must be positive")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return cfg, usagef("endpoint run: --tls-cert and --tls-key go together")
	}
	if c.Mode == endpointproto.ModeRelay && c.TLSCert != "" {
		return cfg, usagef("endpoint run: --tls-cert is for listen mode; a relay endpoint listens on nothing")
	}
	credential, err := c.credential(getenv)
	if err != nil {
		return cfg, err
	}
	hc, err := trustingClient(c.CABundle)
	if err != nil {
		return cfg, err
	}
	cfg = endpoint.Config{Server: c.Server, Credential: credential, HTTPClient: hc, Mode: c.Mode,
		Listen: c.Listen, Advertise: c.Advertise, Grace: c.Grace, DialTimeout: c.DialTimeout, Version: version}
	if c.Mode == endpointproto.ModeRelay {
		return cfg, nil
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return cfg, fmt.Errorf("endpoint run: loading --tls-cert and --tls-key: %w", err)
		}
		cfg.Certificate = &cert
	}
	if cfg.Advertise == "" {
		cfg.Advertise, err = defaultAdvertise(c.Listen)
		if err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// credential reads the join credential from the file, or the environment.
// It never appears in an error.
func (c EndpointRunConfig) credential(getenv func(string) string) (string, error) {
	if c.CredentialFile == "" {
		if v := strings.TrimSpace(getenv(credentialEnv)); v != "" {
			return v, nil
		}
		return "", usagef("endpoint run: no join credential: give --credential-file FILE or set %s (endpoint create printed it once)", credentialEnv)
	}
	b, err := os.ReadFile(c.CredentialFile)
	if err != nil {
		return "", fmt.Errorf("endpoint run: reading the join credential: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("endpoint run: the credential file %s is empty", c.CredentialFile)
	}
	return v, nil
}

// defaultAdvertise is the listen address, with this host's name when the
// address leaves the IP unspecified.
func defaultAdvertise(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", usagef("endpoint run: --listen %q: want host:port", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		name, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("endpoint run: --listen %s names no host and this host has no name; give --advertise: %w", listen, err)
		}
		host = name
	}
	return net.JoinHostPort(host, port), nil
}

// trustingClient is an HTTP client that trusts the system roots and the
// CAs in the PEM file caFile, when given.
func trustingClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the CA bundle " + caFile + " holds no PEM certificate")
		}
	}
	// Every tunnel is an authorization call, many at once when clients
	// crowd in: keep enough connections to the server alive that they do
	// not each pay a new TLS handshake.
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Proxy:           http.ProxyFromEnvironment, MaxIdleConns: 256, MaxIdleConnsPerHost: 64,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
	}}, nil
}
