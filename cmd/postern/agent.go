package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/postern-dev/postern/agent"
)

func agentCommands() []subcommand {
	return []subcommand{
		{"register", "register this host with an activation", runAgentRegister},
		{"run", "keep the connection to the server and serve the sshd helper", runAgentRun},
		{"install", "set this host up: helper user, binary, sshd configuration, service", runAgentInstall},
	}
}

// agentPaths are the flags every agent command shares.
type agentPaths struct {
	stateDir, socket, helperConfig *string
}

func addAgentPaths(fs *flagSet) agentPaths {
	return agentPaths{
		stateDir:     fs.String("state-dir", agent.DefaultStateDir, "where the agent keeps its identity (0700)"),
		socket:       fs.String("socket", agent.DefaultSocket, "the unix socket the sshd helper asks"),
		helperConfig: fs.String("helper-config", agent.DefaultHelperConfig, "where the sshd helper reads its pinned facts"),
	}
}

func runAgentRegister(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("agent register", "agent register --server URL[,URL…] --activation-id ID --activation-code CODE [--ca-bundle FILE]",
		"postern agent register --server https://postern.example:7443 \\\n"+
			"    --activation-id 5a1f…-… --activation-code ABCD… --ca-bundle ca.pem")
	serverURL := fs.String("server", "", "the server's `URL`; several replicas' URLs separated by commas (the agent moves to a live one when its server dies)")
	id := fs.String("activation-id", "", "activation id (postern activation create prints it)")
	code := fs.String("activation-code", "", "activation code (shown once at creation); env POSTERN_ACTIVATION_CODE")
	caBundle := fs.String("ca-bundle", "", "PEM file of the CA that signed the server's certificate")
	paths := addAgentPaths(fs)
	sshPort := fs.Int("ssh-port", 22, "the port sshd listens on, reported to clients")
	sshDir := fs.String("ssh-dir", "/etc/ssh", "where sshd's host keys are")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	if *code == "" {
		*code = m.Getenv("POSTERN_ACTIVATION_CODE")
	}
	if *serverURL == "" || *id == "" || *code == "" {
		return usagef("agent register: --server, --activation-id and --activation-code are required")
	}
	var ca string
	if *caBundle != "" {
		b, err := os.ReadFile(*caBundle)
		if err != nil {
			return err
		}
		ca = string(b)
	}
	st, err := agent.Register(ctx, agent.Registration{
		Server: *serverURL, ActivationID: *id, ActivationCode: *code, CABundle: ca,
		StateDir: *paths.stateDir, HelperConfig: *paths.helperConfig, SocketPath: *paths.socket,
		Facts: agent.Facts{SSHDir: *sshDir, OSRelease: "/etc/os-release", SSHPort: *sshPort},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "Registered as instance %s. Start the agent with: postern agent run\n", st.InstanceID)
	return nil
}

func runAgentRun(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("agent run", "agent run [flags]", "postern agent run   # usually started by the postern-agent service")
	paths := addAgentPaths(fs)
	helperUser := fs.String("helper-user", "postern", "the AuthorizedKeysCommandUser allowed to ask the socket besides root")
	sshPort := fs.Int("ssh-port", 22, "the port sshd listens on, reported to clients")
	sshDir := fs.String("ssh-dir", "/etc/ssh", "where sshd's host keys are")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("agent run: --log-level %q: use debug, info, warn or error", *logLevel)
	}
	uid, gid := -1, -1
	if u, err := user.Lookup(*helperUser); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	a, err := agent.New(agent.Config{
		StateDir: *paths.stateDir, SocketPath: *paths.socket, HelperUID: uid, HelperGID: gid,
		Facts:      agent.Facts{SSHDir: *sshDir, OSRelease: "/etc/os-release", SSHPort: *sshPort},
		Logger:     slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: level})),
		MaxBackoff: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func runAgentInstall(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("agent install", "agent install [--force] [--uninstall]",
		"sudo postern agent install          # then: postern agent register …\nsudo postern agent install --uninstall")
	force := fs.Bool("force", false, "replace an AuthorizedKeysCommand configured by something else")
	uninstall := fs.Bool("uninstall", false, "remove what install added and restore sshd's configuration")
	helperConfig := fs.String("helper-config", agent.DefaultHelperConfig, "where the sshd helper reads its pinned facts")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("agent install must run as root")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in := agent.DefaultInstaller(self, m.Stdout)
	in.Force, in.HelperConfig = *force, *helperConfig
	if *uninstall {
		return in.Uninstall(ctx)
	}
	return in.Install(ctx)
}
