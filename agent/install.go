package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/postern-dev/postern/atomicfile"
)

// Installer sets a host up for Postern in one step, and takes it down
// again. Paths are fields so that tests can aim it at a scratch tree.
type Installer struct {
	Binary      string // the running postern binary, copied to LibexecPath
	LibexecPath string // "/usr/local/libexec/postern" (sshd insists on a root-owned path)
	// Helper is the slim postern-authorized-keys binary, copied to
	// HelperPath and run by sshd: it starts in a few milliseconds where
	// the whole postern binary takes tens on every login attempt. Empty:
	// sshd runs `postern authorized-keys` from LibexecPath instead.
	Helper       string
	HelperPath   string // "/usr/local/libexec/postern-authorized-keys"
	SSHDConfig   string // "/etc/ssh/sshd_config", checked with sshd -t
	DropIn       string // "/etc/ssh/sshd_config.d/60-postern.conf"
	Unit         string // "/etc/systemd/system/postern-agent.service"
	HelperUser   string // "postern": the locked system user sshd runs the helper as
	HelperConfig string // DefaultHelperConfig
	Force        bool   // replace an AuthorizedKeysCommand configured elsewhere
	Out          io.Writer
	// Run runs a command; tests replace it. Nil means exec.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// DefaultInstaller returns the paths of a Debian-like host.
func DefaultInstaller(binary string, out io.Writer) *Installer {
	return &Installer{
		Binary: binary, LibexecPath: "/usr/local/libexec/postern", SSHDConfig: "/etc/ssh/sshd_config",
		Helper: SiblingHelper(binary), HelperPath: "/usr/local/libexec/" + HelperName,
		DropIn: "/etc/ssh/sshd_config.d/60-postern.conf", Unit: "/etc/systemd/system/postern-agent.service",
		HelperUser: "postern", HelperConfig: DefaultHelperConfig, Out: out,
	}
}

// HelperName is the slim sshd helper's file name, beside postern's.
const HelperName = "postern-authorized-keys"

// SiblingHelper returns the slim helper binary next to the postern binary
// at binary (as make build leaves them), or "" when there is none.
func SiblingHelper(binary string) string {
	p := filepath.Join(filepath.Dir(binary), HelperName)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return p
}

// HelperCommand is the installed helper's command line up to its flags:
// the slim binary when there is one, else `postern authorized-keys`. sshd
// runs it with `--config CONFIG %u %f`.
func (in *Installer) HelperCommand() string {
	if in.Helper != "" {
		return in.HelperPath
	}
	return in.LibexecPath + " authorized-keys"
}

func (in *Installer) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if in.Run != nil {
		return in.Run(ctx, name, args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (in *Installer) say(format string, args ...any) {
	if in.Out != nil {
		fmt.Fprintf(in.Out, format+"\n", args...)
	}
}

// DropInContent is the sshd configuration the installer writes.
func (in *Installer) DropInContent() string {
	return "# Written by 'postern agent install'; 'postern agent install --uninstall' removes it.\n" +
		"AuthorizedKeysCommand " + in.HelperCommand() + " --config " + in.HelperConfig + " %u %f\n" +
		"AuthorizedKeysCommandUser " + in.HelperUser + "\n"
}

// Install creates the helper user, installs the binary, configures sshd
// (checked with sshd -t before sshd is reloaded) and the agent's unit.
func (in *Installer) Install(ctx context.Context) error {
	// sshd refuses to even check its configuration without its privilege
	// separation directory, which only a booted systemd creates.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	if err := in.checkNoOtherCommand(ctx); err != nil {
		return err
	}
	if _, err := user.Lookup(in.HelperUser); err != nil {
		// A system account with no home, no shell and a locked password.
		if _, err := in.run(ctx, "useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/usr/sbin/nologin", in.HelperUser); err != nil {
			return err
		}
		in.say("created the locked system user %s", in.HelperUser)
	}
	if err := in.CopyBinary(); err != nil {
		return err
	}
	previous, hadPrevious := readIfExists(in.DropIn)
	if err := os.MkdirAll(filepath.Dir(in.DropIn), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(in.DropIn, []byte(in.DropInContent()), 0o644); err != nil {
		return err
	}
	if _, err := in.run(ctx, "sshd", "-t", "-f", in.SSHDConfig); err != nil {
		// Leave sshd's configuration as it was.
		if hadPrevious {
			_ = atomicfile.Write(in.DropIn, previous, 0o644)
		} else {
			_ = os.Remove(in.DropIn)
		}
		return fmt.Errorf("sshd rejected the new configuration, which was removed again: %w", err)
	}
	in.say("configured sshd: %s", in.DropIn)
	if err := in.writeUnit(); err != nil {
		return err
	}
	in.reloadServices(ctx, true)
	return nil
}

// Uninstall removes what Install added (the helper user stays: files it
// may own would be orphaned otherwise).
func (in *Installer) Uninstall(ctx context.Context) error {
	for _, p := range []string{in.DropIn, in.Unit, in.LibexecPath, in.HelperPath} {
		if p == "" {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if _, err := in.run(ctx, "sshd", "-t", "-f", in.SSHDConfig); err != nil {
		return fmt.Errorf("sshd's configuration does not check after removal: %w", err)
	}
	in.reloadServices(ctx, false)
	removed := in.LibexecPath
	if in.HelperPath != "" {
		removed += " and " + in.HelperPath
	}
	in.say("removed the sshd configuration, the agent unit, %s", removed)
	return nil
}

// checkNoOtherCommand refuses to replace an AuthorizedKeysCommand that
// something else configured, unless forced.
func (in *Installer) checkNoOtherCommand(ctx context.Context) error {
	out, err := in.run(ctx, "sshd", "-T", "-f", in.SSHDConfig, "-C", "user=root,host=localhost,addr=127.0.0.1")
	if err != nil {
		return fmt.Errorf("cannot read sshd's effective configuration: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "authorizedkeyscommand ")
		if !ok || v == "none" || strings.HasPrefix(v, in.LibexecPath+" ") || in.HelperPath != "" && strings.HasPrefix(v, in.HelperPath+" ") {
			continue
		}
		if !in.Force {
			return fmt.Errorf("sshd already runs another AuthorizedKeysCommand (%s); rerun with --force to replace it", v)
		}
		in.say("replacing the AuthorizedKeysCommand %s (--force)", v)
	}
	return nil
}

// CopyBinary installs the running binary at LibexecPath and, when there
// is one, the slim helper at HelperPath, both root-owned.
func (in *Installer) CopyBinary() error {
	if err := in.install(in.Binary, in.LibexecPath); err != nil {
		return err
	}
	if in.Helper != "" {
		return in.install(in.Helper, in.HelperPath)
	}
	return nil
}

func (in *Installer) install(from, to string) error {
	src, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(to, src, 0o755); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(to, 0, 0); err != nil {
			return err
		}
	}
	in.say("installed %s", to)
	return nil
}

func (in *Installer) writeUnit() error {
	unit := `[Unit]
Description=Postern agent (keyless SSH)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=` + in.LibexecPath + ` agent run
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`
	if err := os.MkdirAll(filepath.Dir(in.Unit), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(in.Unit, []byte(unit), 0o644)
}

// reloadServices reloads sshd and (de)activates the agent unit where
// systemd runs; elsewhere it says what to do.
func (in *Installer) reloadServices(ctx context.Context, enable bool) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		in.say("systemd is not running here: reload sshd yourself and start 'postern agent run' under your supervisor")
		return
	}
	if _, err := in.run(ctx, "systemctl", "daemon-reload"); err != nil {
		in.say("warning: %v", err)
	}
	if _, err := in.run(ctx, "systemctl", "reload-or-restart", "ssh"); err != nil {
		in.say("warning: %v", err)
	}
	verb := "enable"
	if !enable {
		verb = "disable"
	}
	if _, err := in.run(ctx, "systemctl", verb, "--now", "postern-agent"); err != nil {
		in.say("warning: %v", err)
	}
}

func readIfExists(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	return b, err == nil
}
