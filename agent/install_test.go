package agent

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scratchInstaller aims an Installer at a temporary tree whose
// sshd_config includes the drop-in directory, and checks it with the real
// sshd. Creating the system user is left to a stub: the test must not
// change the machine's accounts.
func scratchInstaller(t *testing.T, extraConfig string) (*Installer, *[]string) {
	t.Helper()
	if _, err := exec.LookPath("sshd"); err != nil {
		t.Fatalf("sshd is required (.ci/run installs openssh-server): %v", err)
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	conf := filepath.Join(dir, "sshd_config")
	main := "Include " + filepath.Join(dir, "sshd_config.d") + "/*.conf\nHostKey " + hostKey + "\n" + extraConfig
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "postern-src")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	var calls []string
	in := &Installer{
		Binary: bin, LibexecPath: filepath.Join(dir, "libexec", "postern"), SSHDConfig: conf,
		DropIn: filepath.Join(dir, "sshd_config.d", "60-postern.conf"), Unit: filepath.Join(dir, "postern-agent.service"),
		HelperUser: "root", HelperConfig: filepath.Join(dir, "helper.json"), Out: &bytes.Buffer{},
	}
	in.Run = runStub(in, &calls)
	return in, &calls
}

func runStub(in *Installer, calls *[]string) func(context.Context, string, ...string) ([]byte, error) {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		*calls = append(*calls, name+" "+strings.Join(args, " "))
		if name != "sshd" {
			return nil, nil
		}
		saved := in.Run
		in.Run = nil
		defer func() { in.Run = saved }()
		return in.run(ctx, name, args...)
	}
}

func TestInstallConfiguresSSHDAndUninstallRestores(t *testing.T) {
	in, calls := scratchInstaller(t, "")
	ctx := context.Background()
	if err := in.Install(ctx); err != nil {
		t.Fatal(err)
	}
	drop, err := os.ReadFile(in.DropIn)
	if err != nil || !strings.Contains(string(drop), "AuthorizedKeysCommand "+in.LibexecPath+" authorized-keys") ||
		!strings.Contains(string(drop), "AuthorizedKeysCommandUser root") {
		t.Fatalf("drop-in: %q %v", drop, err)
	}
	// sshd now reports our command as its effective configuration.
	out, err := exec.Command("sshd", "-T", "-f", in.SSHDConfig, "-C", "user=root,host=localhost,addr=127.0.0.1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "authorizedkeyscommand "+in.LibexecPath) {
		t.Fatalf("sshd -T: %v %s", err, out)
	}
	if fi, err := os.Stat(in.LibexecPath); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("binary: %v %v", fi, err)
	}
	if !strings.Contains(strings.Join(*calls, "\n"), "sshd -t") {
		t.Errorf("sshd -t was not run: %v", *calls)
	}
	// A second install is idempotent.
	if err := in.Install(ctx); err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	if err := in.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{in.DropIn, in.Unit, in.LibexecPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind", p)
		}
	}
}

func TestInstallRefusesAnotherAuthorizedKeysCommand(t *testing.T) {
	in, _ := scratchInstaller(t, "AuthorizedKeysCommand /usr/bin/true\nAuthorizedKeysCommandUser nobody\n")
	err := in.Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(in.DropIn); !os.IsNotExist(err) {
		t.Error("the drop-in was written despite the refusal")
	}
}

func TestInstallBacksOutWhenSSHDRejectsTheConfig(t *testing.T) {
	in, _ := scratchInstaller(t, "")
	in.HelperUser = "no such user\nBogusOption yes"
	if err := in.Install(context.Background()); err == nil {
		t.Fatal("a configuration sshd rejects was installed")
	}
	if _, err := os.Stat(in.DropIn); !os.IsNotExist(err) {
		t.Error("the rejected drop-in was left in place")
	}
}

func TestInstallPrefersTheSlimHelper(t *testing.T) {
	in, _ := scratchInstaller(t, "")
	dir := filepath.Dir(in.Binary)
	if SiblingHelper(in.Binary) != "" {
		t.Fatal("SiblingHelper found a helper that is not there")
	}
	helper := filepath.Join(dir, HelperName)
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := SiblingHelper(in.Binary); got != helper {
		t.Fatalf("SiblingHelper = %q, want %q", got, helper)
	}
	in.Helper, in.HelperPath = helper, filepath.Join(dir, "libexec", HelperName)
	ctx := context.Background()
	if err := in.Install(ctx); err != nil {
		t.Fatal(err)
	}
	drop, err := os.ReadFile(in.DropIn)
	want := "AuthorizedKeysCommand " + in.HelperPath + " --config " + in.HelperConfig + " %u %f\n"
	if err != nil || !strings.Contains(string(drop), want) {
		t.Fatalf("drop-in: %q %v; want %q", drop, err, want)
	}
	out, err := exec.Command("sshd", "-T", "-f", in.SSHDConfig, "-C", "user=root,host=localhost,addr=127.0.0.1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "authorizedkeyscommand "+in.HelperPath+" --config") {
		t.Fatalf("sshd -T: %v %s", err, out)
	}
	for _, p := range []string{in.LibexecPath, in.HelperPath} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	// Our own slim helper is not "another AuthorizedKeysCommand".
	if err := in.Install(ctx); err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	if err := in.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{in.DropIn, in.Unit, in.LibexecPath, in.HelperPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind", p)
		}
	}
}
