package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEndpointRunHelp(t *testing.T) {
	isolateAWS(t)
	e := &testEnv{t: t}
	out := e.ok("endpoint", "run", "--help")
	for _, want := range []string{"--server", "-credential-file", "-ca-bundle", "-mode", "-listen", "0.0.0.0:8443", "-advertise",
		"-tls-cert", "-tls-key", "-grace", "30s", "-dial-timeout", "10s", credentialEnv, "Example:\n  "} {
		if !strings.Contains(out, want) {
			t.Errorf("endpoint run --help does not mention %q:\n%s", want, out)
		}
	}
	if out := e.ok("endpoint", "--help"); !strings.Contains(out, "run ") {
		t.Errorf("endpoint --help does not list run:\n%s", out)
	}
}

func TestEndpointRunUsage(t *testing.T) {
	isolateAWS(t)
	t.Setenv(credentialEnv, "")
	e := &testEnv{t: t}
	e.fails(2, []string{"no join credential", "--credential-file", credentialEnv}, "endpoint", "run", "--server", "https://127.0.0.1:1")
	e.fails(2, []string{"--server is required"}, "endpoint", "run")
	e.fails(2, []string{"--mode", "listen or relay"}, "endpoint", "run", "--server", "https://127.0.0.1:1", "--mode", "both")
	e.fails(2, []string{"--tls-cert and --tls-key go together"}, "endpoint", "run", "--server", "https://127.0.0.1:1", "--tls-cert", "c.pem")

	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.fails(1, []string{"credential file", "is empty"}, "endpoint", "run", "--server", "https://127.0.0.1:1", "--credential-file", empty)
	e.fails(1, []string{"reading the join credential"}, "endpoint", "run", "--server", "https://127.0.0.1:1", "--credential-file", filepath.Join(dir, "missing"))

	// A credential that a server refuses is never echoed back.
	secret := "eice-0123456789abcdef0.not-a-real-secret"
	t.Setenv(credentialEnv, secret)
	stderr := e.fails(2, []string{"--tls-cert is for listen mode"}, "endpoint", "run", "--server", "https://127.0.0.1:1", "--mode", "relay", "--tls-cert", "c", "--tls-key", "k")
	if strings.Contains(stderr, secret) {
		t.Errorf("stderr holds the credential: %q", stderr)
	}
}

// signalWriter keeps what is written and closes seen once it holds want.
type signalWriter struct {
	syncBuffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if strings.Contains(w.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

func TestEndpointRunJoinsAndIsDeleted(t *testing.T) {
	e := startServer(t)
	_, subnet := e.newSubnet("10.60.0.0/16", "10.60.1.0/24")
	var created struct {
		InstanceConnectEndpoint struct{ InstanceConnectEndpointId string }
		JoinCredential          string
	}
	e.okJSON(&created, "endpoint", "create", "--subnet-id", subnet)
	id := created.InstanceConnectEndpoint.InstanceConnectEndpointId
	credFile := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(credFile, []byte(created.JoinCredential+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	stderr := &signalWriter{want: "control connection open", seen: make(chan struct{})}
	m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: stderr, Getenv: os.Getenv}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exit := make(chan int, 1)
	go func() {
		exit <- m.Run(ctx, []string{"endpoint", "run", "--server", os.Getenv("AWS_ENDPOINT_URL"), "--ca-bundle", os.Getenv("AWS_CA_BUNDLE"),
			"--credential-file", credFile, "--mode", "relay"})
	}()
	select {
	case <-stderr.seen:
	case code := <-exit:
		t.Fatalf("endpoint run exited %d before connecting:\n%s", code, stderr.String())
	case <-ctx.Done():
		t.Fatalf("endpoint run did not connect:\n%s", stderr.String())
	}
	if out := e.ok("endpoint", "list", id); !strings.Contains(out, "create-complete") {
		t.Errorf("after joining, endpoint list printed:\n%s", out)
	}
	e.ok("endpoint", "delete", id)
	select {
	case code := <-exit:
		if code != 1 || !strings.Contains(stderr.String(), "was deleted") {
			t.Errorf("endpoint run exited %d after deletion:\n%s", code, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("endpoint run did not exit after deletion:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), created.JoinCredential) {
		t.Error("endpoint run logged its credential")
	}
}

// newSubnet creates a VPC and a subnet in it and returns their ids.
func (e *testEnv) newSubnet(vpcCIDR, subnetCIDR string) (vpcID, subnetID string) {
	e.t.Helper()
	var v struct{ Vpc struct{ VpcId string } }
	e.okJSON(&v, "vpc", "create", "--cidr", vpcCIDR)
	var s struct{ Subnet struct{ SubnetId string } }
	e.okJSON(&s, "subnet", "create", "--vpc-id", v.Vpc.VpcId, "--cidr", subnetCIDR)
	return v.Vpc.VpcId, s.Subnet.SubnetId
}
