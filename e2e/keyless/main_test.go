package keyless

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern-dev/postern/agent"
	"github.com/postern-dev/postern/store/postgres/pgtest"
)

var (
	// posternBin is the binary TestMain built.
	posternBin string
	// authKeysBin is the slim postern-authorized-keys TestMain built: the
	// helper sshd runs, as postern agent install sets it up.
	authKeysBin string
	// repoRoot is the module root.
	repoRoot string
)

// probeEnv, when set in the environment, turns the test binary into the
// socket probe: a tiny client of the agent's helper socket that a test
// runs as another user (see probeSocket).
const probeEnv = "POSTERN_KEYLESS_PROBE_SOCKET"

func TestMain(m *testing.M) {
	if socket := os.Getenv(probeEnv); socket != "" {
		os.Exit(runProbe(socket, os.Getenv("POSTERN_KEYLESS_PROBE_USER")))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyless: cannot find the module root two levels up: %v\n", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "postern-keyless-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyless:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyless: the go tool is not on PATH:", err)
		return 1
	}
	posternBin = filepath.Join(dir, "postern")
	build := exec.Command(goTool, "build", "-trimpath", "-o", posternBin, "./cmd/postern")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "keyless: go build ./cmd/postern: %v\n%s", err, out)
		return 1
	}
	authKeysBin = filepath.Join(dir, agent.HelperName)
	build = exec.Command(goTool, "build", "-trimpath", "-o", authKeysBin, "./cmd/postern-authorized-keys")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as make build does
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "keyless: go build ./cmd/postern-authorized-keys: %v\n%s", err, out)
		return 1
	}
	// pgtest stops a PostgreSQL cluster it had to start.
	return pgtest.Main(m)
}

// probeResult is what the socket probe reports on stdout.
type probeResult struct {
	UID     int
	Error   string // empty when the agent answered
	Records int    // how many records it returned
}

// runProbe asks the agent's socket for user's records with the very client
// the sshd helper uses, and prints a probeResult.
func runProbe(socket, user string) int {
	res := probeResult{UID: os.Getuid()}
	recs, err := agent.QueryAgent(socket, user, 3*time.Second)
	if err != nil {
		res.Error = err.Error()
	}
	res.Records = len(recs)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}
