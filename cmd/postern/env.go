package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/server"
)

func runEnv(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("env", "env [--data-dir DIR]",
		"eval \"$(postern env --data-dir ./postern-data)\"\naws ec2 describe-vpcs")
	dataDir := fs.String("data-dir", m.defaultDataDir(), "the server's data `directory`")
	wait := fs.Duration("wait", 0, "wait up to this long for the server to be ready (e.g. 30s), for scripts that just started it")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	info, err := waitReady(ctx, dir, *wait)
	if err != nil {
		return err
	}
	id, secret, err := readCredentials(filepath.Join(dir, server.CredentialsFile), server.CredentialsProfile)
	if err != nil {
		return err
	}
	vars := [][2]string{
		{"AWS_ACCESS_KEY_ID", id},
		{"AWS_SECRET_ACCESS_KEY", secret},
		{"AWS_REGION", info.Region},
		{"AWS_DEFAULT_REGION", info.Region},
		{"AWS_ENDPOINT_URL", info.URL},
	}
	if info.CABundle != "" {
		vars = append(vars, [2]string{"AWS_CA_BUNDLE", info.CABundle})
	}
	// A session token or profile from elsewhere would be mixed into the
	// signature or win over these keys.
	fmt.Fprintln(m.Stdout, "unset AWS_SESSION_TOKEN AWS_PROFILE")
	for _, v := range vars {
		fmt.Fprintf(m.Stdout, "export %s=%s\n", v[0], shellQuote(v[1]))
	}
	return nil
}

// readCredentials reads one profile of an AWS shared-credentials file.
func readCredentials(path, profile string) (id, secret string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in = strings.Trim(line, "[] ") == profile
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !in || !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", err
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%s has no complete [%s] profile", path, profile)
	}
	return id, secret, nil
}

// shellQuote quotes s for POSIX shells when needed.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// waitReady reads the server's info file and, when wait > 0, polls the
// server's /readyz until it answers (or wait runs out).
func waitReady(ctx context.Context, dir string, wait time.Duration) (server.Info, error) {
	info, err := server.ReadInfo(dir)
	if wait <= 0 {
		return info, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		if err == nil {
			if err = probeReady(ctx, info); err == nil {
				return info, nil
			}
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("server not ready after %s: %w", wait, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		info, err = server.ReadInfo(dir)
	}
}

func probeReady(ctx context.Context, info server.Info) error {
	pool := x509.NewCertPool()
	if info.CABundle != "" {
		pem, err := os.ReadFile(info.CABundle)
		if err != nil {
			return err
		}
		pool.AppendCertsFromPEM(pem)
	}
	return client.Ready(ctx, info.URL, &tls.Config{RootCAs: pool})
}
