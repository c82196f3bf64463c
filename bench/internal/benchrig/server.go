package benchrig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/postern-dev/postern/server"
)

// Server is `postern server` run as a child, and what a client needs to
// talk to it.
type Server struct {
	Proc *Child
	Info server.Info
	CA   []byte // PEM of the server's CA
	// Env is a clean environment for postern client commands: no
	// personal ~/.aws, PATH, a HOME of the run's own, and the variables
	// `postern env` prints.
	Env   []string
	Vars  map[string]string // those variables
	Admin aws.Config        // the admin's SDK configuration
}

// ServerConfig says how to run the server.
type ServerConfig struct {
	Postern string // the postern binary
	Dir     string // its data directory and the clients' HOME go below
	Listen  string // host:port, port 0 for any
}

// StartServer runs `postern server` with throttling off (the figures are
// the server's capacity, not the per-key rate limit) and auditing on, and
// loads its address, CA and admin credentials.
func StartServer(ctx context.Context, procs *Procs, cfg ServerConfig) (*Server, error) {
	data := filepath.Join(cfg.Dir, "server")
	c, err := procs.Spawn("server", nil, cfg.Postern, "server", "--listen", cfg.Listen, "--data-dir", data,
		"--throttle-rate", "0", "--log-level", "warn", "--shutdown-grace", "5s")
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
	s := &Server{Proc: c, Vars: map[string]string{},
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
