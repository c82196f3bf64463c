package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickstartBlock returns the shell block between the README's quickstart
// markers.
func quickstartBlock(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- quickstart:begin -->")
	block, _, ok2 := strings.Cut(rest, "<!-- quickstart:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- quickstart:begin --> … <!-- quickstart:end --> block")
	}
	block = strings.TrimSpace(block)
	body, ok := strings.CutPrefix(block, "```sh\n")
	body, ok2 = strings.CutSuffix(body, "```")
	if !ok || !ok2 {
		t.Fatalf("the README's quickstart is not one ```sh block:\n%s", block)
	}
	return body
}

// goEnv returns the go tool's settings that a build under another HOME
// needs to find the same caches (and never download a toolchain).
func goEnv(t *testing.T) map[string]string {
	t.Helper()
	keys := []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOFLAGS", "GONOSUMDB", "GOPRIVATE", "GOSUMDB"}
	out, err := exec.Command("go", append([]string{"env"}, keys...)...).Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	env := map[string]string{"GOTOOLCHAIN": "local"}
	for i, v := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if i < len(keys) && v != "" {
			env[keys[i]] = v
		}
	}
	return env
}

// TestREADMEQuickstart runs the README's quickstart as a newcomer would,
// with three differences, each to keep the test hermetic:
//
//   - It runs in a scratch copy of the checkout: a temporary directory
//     holding a symlink to every top-level entry of the repository except
//     bin/ and postern-data/. So `make build` really builds (from the build
//     cache TestMain warmed, with the Makefile's own flags), and
//     ./postern-data and ./bin are created in the scratch directory, not in
//     the developer's checkout.
//   - The server listens on port 0 instead of the default 7443, so that a
//     server the developer runs, or a concurrent CI job, cannot collide
//     with it; `postern env` reads the chosen address from the data dir.
//   - HOME is an empty directory (no ~/.aws), and only PATH and the go
//     tool's cache locations come from the environment.
//
// A trap stops the background server when the block ends and reports its
// exit status; the test then checks that no process of the block is left.
func TestREADMEQuickstart(t *testing.T) {
	t.Parallel()
	requireAWSCLI(t)
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is not installed; %s", ciHint)
	}
	block := quickstartBlock(t)
	const serverLine = "./bin/postern server --data-dir ./postern-data"
	if !strings.Contains(block, serverLine) || !strings.HasPrefix(block, "make build\n") || !strings.Contains(block, "aws ec2 describe-vpcs") {
		t.Fatalf("the README's quickstart changed; update this test:\n%s", block)
	}
	block = strings.Replace(block, serverLine, serverLine+" --listen 127.0.0.1:0", 1)

	work := t.TempDir()
	entries, err := os.ReadDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "bin", "postern-data", ".git":
			continue
		}
		if err := os.Symlink(filepath.Join(repoRoot, e.Name()), filepath.Join(work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	script := `set -e
stop_server() {
	for pid in $(jobs -p); do
		kill -TERM "$pid" 2>/dev/null || true
		if wait "$pid"; then status=0; else status=$?; fi
		echo "quickstart: background server exited with status $status" >&2
	done
}
trap stop_server EXIT
` + block + "\n"

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = work
	cmd.Env = cleanEnv(t.TempDir(), goEnv(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	err = cmd.Wait()
	// Whatever happened, nothing the block started may outlive it.
	if kerr := syscall.Kill(-pgid, 0); !errors.Is(kerr, syscall.ESRCH) {
		t.Errorf("processes of the quickstart are still running after it ended (kill -0 -%d: %v)", pgid, kerr)
	}
	if err != nil {
		t.Fatalf("the quickstart failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "quickstart: background server exited with status 0") {
		t.Errorf("the quickstart's server did not exit cleanly:\n%s", stderr.String())
	}

	// The last thing printed is the aws CLI's JSON.
	out := stdout.String()
	i := strings.LastIndex(out, "\n{\n")
	if i < 0 {
		t.Fatalf("the quickstart printed no JSON from aws ec2 describe-vpcs:\n%s", out)
	}
	checkDescribeVpcsJSON(t, []byte(out[i+1:]), "", "10.0.0.0/16", "lab")

	if _, err := os.Stat(filepath.Join(work, "bin", "postern")); err != nil {
		t.Errorf("make build did not produce ./bin/postern in the scratch checkout: %v", err)
	}
	_, secret := readCredentials(t, filepath.Join(work, "postern-data", "admin.credentials"))
	noteSecret(secret, "admin secret of the quickstart server")
	assertNoSecretsIn(t, "the quickstart's output", out+stderr.String())
}
