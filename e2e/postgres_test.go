package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/postern-dev/postern/store/postgres/pgtest"
)

// gate is a TCP proxy in front of PostgreSQL that the test opens and
// shuts: shut, it refuses new connections and cuts the live ones, as a
// database host that went away.
type gate struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	open   bool
	conns  map[net.Conn]struct{}
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{l: l, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { l.Close(); g.shut() })
	go g.serve()
	return g
}

func (g *gate) serve() {
	for {
		c, err := g.l.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if !g.open {
			g.mu.Unlock()
			c.Close()
			continue
		}
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		go g.pipe(c)
	}
}

func (g *gate) pipe(c net.Conn) {
	defer g.drop(c)
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	g.mu.Lock()
	g.conns[up] = struct{}{}
	g.mu.Unlock()
	defer g.drop(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (g *gate) drop(c net.Conn) {
	c.Close()
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// openUp lets connections through.
func (g *gate) openUp() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// shut refuses new connections and cuts every live one.
func (g *gate) shut() {
	g.mu.Lock()
	g.open = false
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
}

// through returns dbURL with its host replaced by the gate's address.
func (g *gate) through(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = g.l.Addr().String()
	return u.String()
}

func hostOf(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// readyz returns the status of the server's /readyz.
func (s *server) readyz(t *testing.T) int {
	t.Helper()
	resp, err := s.httpClient.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestPostgresOutages starts a server while its database is down, then
// takes the database away while it serves and brings it back: the server
// waits and says so, fails requests with clear AWS errors (reporting
// nothing as done that was not stored), turns /readyz false, and recovers
// without a restart.
func TestPostgresOutages(t *testing.T) {
	dbURL := pgtest.URL(t)
	g := newGate(t, hostOf(t, dbURL))
	s := launchServer(t, t.TempDir(), "--store", g.through(t, dbURL))

	// Down at start: the server retries, saying why, and does not listen.
	if _, ok := s.Log.await("waiting for the database", s.exited, 30*time.Second); !ok {
		t.Fatalf("the server did not say it waits for the database\nlog:\n%s", s.Log)
	}
	if _, ok := s.Log.await("retry_in=1s", s.exited, 30*time.Second); !ok {
		t.Fatalf("the server did not retry with a growing wait\nlog:\n%s", s.Log)
	}
	if strings.Contains(s.Stdout.String(), "listening") {
		t.Fatal("the server listens before its database is up")
	}
	g.openUp()
	s.awaitListening(t, 60*time.Second)
	if code := s.readyz(t); code != http.StatusOK {
		t.Fatalf("/readyz with the database up: %d", code)
	}
	ic := s.adminIAM()
	ctx := context.Background()
	if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("before-outage")}); err != nil {
		t.Fatal(err)
	}

	// Lost while serving.
	g.shut()
	if code := s.readyz(t); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the database gone: %d, want 503", code)
	}
	_, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("during-outage")})
	if code, msg, status := apiError(t, err); status < 500 || code == "" || strings.Contains(msg, "postgres") {
		t.Errorf("CreateUser with the database gone: %s (HTTP %d) %q; want a 5xx AWS error that does not expose the database", code, status, msg)
	}
	r := s.do(t, request{Target: "AWSEC2InstanceConnectService.SendSSHPublicKey", Service: "ec2-instance-connect", Creds: s.admin(),
		Body: []byte(`{"InstanceId":"i-0123456789abcdef0","InstanceOSUser":"ec2-user","SSHPublicKey":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}`)})
	if r.Status != http.StatusInternalServerError || r.Code != "ServiceException" {
		t.Errorf("SendSSHPublicKey with the database gone: %v; want HTTP 500 ServiceException", r)
	}

	// Back: the server recovers on its own.
	g.openUp()
	waitFor(t, "/readyz to recover", 30*time.Second, func() bool { return s.readyz(t) == http.StatusOK })
	if _, err := ic.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("during-outage")}); err == nil {
		t.Error("the user whose creation failed during the outage exists")
	}
	waitFor(t, "a call to succeed after the outage", 30*time.Second, func() bool {
		_, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("after-outage")})
		return err == nil
	})
	if _, err := ic.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("before-outage")}); err != nil {
		t.Errorf("the user created before the outage: %v", err)
	}
	out, errOut, code := s.postern(t, "audit", "verify", "--public-key", filepath.Join(s.DataDir, "audit.pub"))
	if code != 0 {
		t.Errorf("audit verify after the outage: exit %d\n%s\n%s", code, out, errOut)
	}

	// A restart while the database is down: the replica answers health
	// checks as live and not ready while it waits, then serves.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s.Stop(t)
	g.shut()
	again := launchServer(t, s.DataDir, "--store", g.through(t, dbURL), "--listen", addr)
	if _, ok := again.Log.await("answering health checks while waiting for the database", again.exited, 30*time.Second); !ok {
		t.Fatalf("the restarted server does not answer health checks while it waits\nlog:\n%s", again.Log)
	}
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable} {
		resp, err := s.httpClient.Get("https://" + addr + path)
		if err != nil {
			t.Fatalf("%s while waiting for the database: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s while waiting for the database: %d, want %d", path, resp.StatusCode, want)
		}
	}
	g.openUp()
	again.awaitListening(t, 60*time.Second)
	if code := again.readyz(t); code != http.StatusOK {
		t.Errorf("/readyz once the database is back: %d", code)
	}
}

// TestReplicasRace runs two servers on one database and has them create
// the same users and endpoints at the same moment: one wins, the other
// gets a clear conflict, and nothing is created twice.
func TestReplicasRace(t *testing.T) {
	dbURL := pgtest.URL(t)
	a := startServer(t, "--store", dbURL)
	b := startReplicaOf(t, a, "--store", dbURL)
	bDir := b.DataDir
	ctx := context.Background()

	// A replica with a secrets key of its own cannot open the cluster's
	// keys: it refuses to start, saying which file to copy.
	stranger := exec.Command(posternBin, append([]string{"server", "--data-dir", t.TempDir(), "--store", dbURL}, defaultServerArgs...)...)
	stranger.Env = cleanEnv(t.TempDir(), nil)
	out, err := stranger.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "secrets.key") || strings.Contains(string(out), "listening") {
		t.Errorf("a replica with another secrets key: %v\n%s\nwant a refusal naming secrets.key", err, out)
	}

	// Users: each name is created by exactly one replica.
	for i := range 8 {
		name := fmt.Sprintf("racer-%d", i)
		errs := make(chan error, 2)
		for _, s := range []*server{a, b} {
			go func() {
				_, err := s.adminIAM().CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)})
				errs <- err
			}()
		}
		won := 0
		for range 2 {
			err := <-errs
			if err == nil {
				won++
				continue
			}
			if code, _, status := apiError(t, err); code != "EntityAlreadyExists" || status != http.StatusConflict {
				t.Errorf("the losing CreateUser %s: %s (HTTP %d), want EntityAlreadyExists (409)", name, code, status)
			}
		}
		if won != 1 {
			t.Errorf("CreateUser %s raced on two replicas: %d succeeded, want 1", name, won)
		}
	}

	// Endpoints: one per subnet, whichever replica asks first.
	ec := a.adminEC2()
	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.70.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		sn, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(fmt.Sprintf("10.70.%d.0/24", i+1))})
		if err != nil {
			t.Fatal(err)
		}
		subnet := aws.ToString(sn.Subnet.SubnetId)
		errs := make(chan error, 2)
		for _, s := range []*server{a, b} {
			go func() {
				_, errOut, code := s.postern(t, "endpoint", "create", "--subnet-id", subnet)
				if code != 0 {
					errs <- errors.New(errOut)
					return
				}
				errs <- nil
			}()
		}
		won := 0
		for range 2 {
			if err := <-errs; err == nil {
				won++
			} else if !strings.Contains(err.Error(), "already") || !strings.Contains(err.Error(), "eice-") {
				t.Errorf("the losing endpoint create in %s: %v; want a conflict naming the endpoint the subnet has", subnet, err)
			}
		}
		if won != 1 {
			t.Errorf("endpoint create in %s raced on two replicas: %d succeeded, want 1", subnet, won)
		}
	}

	// A console session opened on one replica is good on the other, and
	// failed sign-ins count on both: guesses spread over the two lock
	// the user on each.
	a.setPassword(t, "racer-0", "cobalt lantern 2049 drift")
	in := a.signIn(t, "racer-0", "cobalt lantern 2049 drift", "")
	in.want(t, "sign-in on A", http.StatusOK, "")
	b.console(t, http.MethodGet, "/console/api/session", nil, in.cookie, nil).want(t, "A's session on B", http.StatusOK, "")
	failUntilLocked(t, []*server{a, b}, "racer-1")
	for name, s := range map[string]*server{"A": a, "B": b} {
		s.signIn(t, "racer-1", "guess number 99", "").want(t, "the locked user on "+name, http.StatusTooManyRequests, "TooManyAttempts")
	}

	verified, errOut, code := b.postern(t, "audit", "verify", "--public-key", filepath.Join(bDir, "audit.pub"))
	if code != 0 {
		t.Errorf("audit verify after the races: exit %d\n%s\n%s", code, verified, errOut)
	}
}

// TestReplicasShareThrottling: with two replicas, each allows half the
// per-key rate, so a client spreading its calls over both gets the
// configured burst in all, not twice it.
func TestReplicasShareThrottling(t *testing.T) {
	dbURL := pgtest.URL(t)
	args := []string{"--store", dbURL, "--throttle-rate", "1", "--throttle-burst", "10"}
	a := startServer(t, args...)
	b := startReplicaOf(t, a, args...)
	for _, s := range []*server{a, b} {
		if _, ok := s.Log.await(`msg="replicas serving" count=2`, s.exited, 30*time.Second); !ok {
			t.Fatalf("a replica did not learn there are two\nlog:\n%s", s.Log)
		}
	}
	ctx := context.Background()
	ok, throttled := 0, 0
	for i := range 30 {
		s := []*server{a, b}[i%2]
		_, err := s.adminEC2().DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
		if err == nil {
			ok++
			continue
		}
		if code, _, status := apiError(t, err); code != "ThrottlingException" || status != http.StatusBadRequest {
			t.Fatalf("a throttled call: %s (HTTP %d)", code, status)
		}
		throttled++
	}
	// 10 in the bursts (5 per replica), plus what 1 call/s refills while
	// the loop runs.
	if ok < 10 || ok > 13 {
		t.Errorf("30 calls spread over two replicas with a burst of 10: %d allowed, %d throttled; want about 10 allowed", ok, throttled)
	}
}

// startReplicaOf starts a second replica of a's store (args name it) from
// a data directory that holds a's secrets key and, for the test's calls,
// its admin credentials.
func startReplicaOf(t *testing.T, a *server, args ...string) *server {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"secrets.key", "admin.credentials"} {
		b, err := os.ReadFile(filepath.Join(a.DataDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return startServerIn(t, dir, args...)
}
