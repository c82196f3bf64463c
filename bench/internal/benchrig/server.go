package benchrig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/postern-dev/postern/client"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/postern-dev/postern/server"
)

// Server is `postern server` run as a child, and what a client needs to
// talk to it.
type Server struct {
	Proc    *Child
	DataDir string
	Info    server.Info
	CA      []byte // PEM of the server's CA
	// Env is a clean environment for postern client commands: no
	// personal ~/.aws, PATH, a HOME of the run's own, and the variables
	// `postern env` prints.
	Env   []string
	Vars  map[string]string // those variables
	Admin aws.Config        // the admin's SDK configuration

	store string // its --store
}

// ServerConfig says how to run the server.
type ServerConfig struct {
	Postern string // the postern binary
	Dir     string // its data directory and the clients' HOME go below
	Listen  string // host:port, port 0 for any
	// Name names the child process and its data directory under Dir
	// (default "server"); replicas of one run need names of their own.
	Name string
	// Store is the server's --store: empty for the default (SQLite in
	// the data directory), or a postgres:// URL that replicas share.
	Store string
}

// secretsKeyFile is the key in a data directory that seals what replicas
// share in the database: all a new replica needs from an existing one.
const secretsKeyFile = "secrets.key"

func (cfg ServerConfig) name() string {
	if cfg.Name == "" {
		return "server"
	}
	return cfg.Name
}

// spawn starts the server process on data.
func (cfg ServerConfig) spawn(procs *Procs, data string) (*Child, error) {
	args := []string{"server", "--listen", cfg.Listen, "--data-dir", data,
		"--throttle-rate", "0", "--log-level", "warn", "--shutdown-grace", "5s"}
	if cfg.Store != "" {
		args = append(args, "--store", cfg.Store)
	}
	return procs.Spawn(cfg.name(), nil, cfg.Postern, args...)
}

// StartServer runs `postern server` with throttling off (the figures are
// the server's capacity, not the per-key rate limit) and auditing on, and
// loads its address, CA and admin credentials.
func StartServer(ctx context.Context, procs *Procs, cfg ServerConfig) (*Server, error) {
	data := filepath.Join(cfg.Dir, cfg.name())
	c, err := cfg.spawn(procs, data)
	if err != nil {
		return nil, err
	}
	home := filepath.Join(cfg.Dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, cfg.Postern, "env", "--data-dir", data, "--wait", "30s")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("postern env: %v: %s\nserver: %s", err, ExitText(err), c.Tail())
	}
	s := &Server{Proc: c, DataDir: data, store: cfg.Store, Vars: map[string]string{},
		Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "USER=root", "LOGNAME=root"}}
	for _, line := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, "'")
			s.Vars[k] = v
			s.Env = append(s.Env, k+"="+v)
		}
	}
	if s.Info, err = server.ReadInfo(data); err != nil {
		return nil, err
	}
	if s.CA, err = os.ReadFile(s.Info.CABundle); err != nil {
		return nil, err
	}
	s.Admin, err = s.AWSConfig(s.Vars["AWS_ACCESS_KEY_ID"], s.Vars["AWS_SECRET_ACCESS_KEY"], 4)
	return s, err
}

// StartReplica runs another `postern server` on s's store (a postgres://
// URL; cfg.Store is ignored), as an operator adds a replica: from a data
// directory holding only s's secrets key, so that it takes the cluster's
// other keys from the database. It waits until the replica is ready. The
// returned Server talks to the new replica as s's admin.
func (s *Server) StartReplica(ctx context.Context, procs *Procs, cfg ServerConfig) (*Server, error) {
	if s.store == "" {
		return nil, errors.New("a replica needs a shared store: start the first server with a postgres:// Store")
	}
	cfg.Store = s.store
	data := filepath.Join(cfg.Dir, cfg.name())
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	secrets, err := os.ReadFile(filepath.Join(s.DataDir, secretsKeyFile))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(data, secretsKeyFile), secrets, 0o600); err != nil {
		return nil, err
	}
	c, err := cfg.spawn(procs, data)
	if err != nil {
		return nil, err
	}
	r := &Server{Proc: c, DataDir: data, store: s.store, Vars: map[string]string{}}
	if r.Info, err = waitReady(ctx, c, data, 60*time.Second); err != nil {
		return nil, err
	}
	if r.CA, err = os.ReadFile(r.Info.CABundle); err != nil {
		return nil, err
	}
	if !bytes.Equal(r.CA, s.CA) {
		return nil, fmt.Errorf("replica %s has a CA of its own, not the cluster's", cfg.name())
	}
	for k, v := range s.Vars {
		switch k {
		case "AWS_ENDPOINT_URL":
			v = r.Info.URL
		case "AWS_CA_BUNDLE":
			v = r.Info.CABundle
		}
		r.Vars[k] = v
	}
	for _, kv := range s.Env {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := r.Vars[k]; ok {
			kv = k + "=" + v
		}
		r.Env = append(r.Env, kv)
	}
	r.Admin, err = r.AWSConfig(r.Vars["AWS_ACCESS_KEY_ID"], r.Vars["AWS_SECRET_ACCESS_KEY"], 4)
	return r, err
}

// waitReady waits until the server c on data has written its info file
// and answers /readyz, and returns the info.
func waitReady(ctx context.Context, c *Child, data string, limit time.Duration) (server.Info, error) {
	deadline := time.Now().Add(limit)
	for {
		info, err := server.ReadInfo(data)
		if err == nil {
			err = probeReady(ctx, info)
			if err == nil {
				return info, nil
			}
		}
		if c.Exited() {
			return info, fmt.Errorf("%s exited: %s", c.Name, c.Tail())
		}
		if time.Now().After(deadline) {
			return info, fmt.Errorf("%s not ready after %s: %v\n%s", c.Name, limit, err, c.Tail())
		}
		select {
		case <-ctx.Done():
			return info, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probeReady asks the server's /readyz once.
func probeReady(ctx context.Context, info server.Info) error {
	ca, err := os.ReadFile(info.CABundle)
	if err != nil {
		return err
	}
	tc, err := (&Server{CA: ca}).TLSConfig()
	if err != nil {
		return err
	}
	return client.Ready(ctx, info.URL, tc)
}

// TLSConfig trusts the server's CA, and only it.
func (s *Server) TLSConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CA) {
		return nil, errors.New("the server's CA bundle holds no certificate")
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// AWSConfig is an SDK configuration for one access key. Retries are off so
// that every failure is counted, and the connection pool holds conns idle
// connections so that concurrent callers reuse them.
func (s *Server) AWSConfig(id, secret string, conns int) (aws.Config, error) {
	tc, err := s.TLSConfig()
	if err != nil {
		return aws.Config{}, err
	}
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.TLSClientConfig = tc
		t.MaxIdleConns = conns
		t.MaxIdleConnsPerHost = conns
	})
	return aws.Config{
		Region:       s.Info.Region,
		BaseEndpoint: aws.String(s.Info.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		HTTPClient:   hc,
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	}, nil
}

// CreateUser makes an IAM user with one inline policy and an access key,
// and returns the key: benchmarks sign as ordinary users under a policy,
// not as the admin.
func (s *Server) CreateUser(ctx context.Context, name, policyName, policy string) (id, secret string, err error) {
	c := iam.NewFromConfig(s.Admin)
	if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		return "", "", fmt.Errorf("create user %s: %w", name, err)
	}
	if _, err := c.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name),
		PolicyName: aws.String(policyName), PolicyDocument: aws.String(policy)}); err != nil {
		return "", "", fmt.Errorf("policy for %s: %w", name, err)
	}
	k, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
	if err != nil {
		return "", "", fmt.Errorf("access key for %s: %w", name, err)
	}
	return aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey), nil
}

// FreePort returns a TCP port free on loopback just now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
