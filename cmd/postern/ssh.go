package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/opentunnel"
)

// defaultOSUser is the local login name: the name plain ssh would use.
func (m *Main) defaultOSUser() string {
	if u := m.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

func runSSH(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("ssh", "ssh [flags] INSTANCE-ID|NAME [-- SSH-ARGS… [COMMAND…]]",
		"postern ssh web-1\n"+
			"postern ssh --os-user deploy i-0123456789abcdef0 -- 'uname -a'\n"+
			"postern ssh web-1 --local-forwarding 8080:localhost:80\n"+
			"postern ssh --connection-type eice --eice-options maxTunnelDuration=900 web-1")
	id := fs.String("instance-id", "", "the instance (or give its id or Name tag as the argument)")
	osUser := fs.String("os-user", m.defaultOSUser(), "the OS user to log in as")
	connType := fs.String("connection-type", "auto", connectionTypeHelp)
	eiceFlag := fs.String("eice-options", "", eiceOptionsHelp)
	keyFile := fs.String("private-key-file", "", "use this key instead of a new ephemeral one")
	port := fs.Int("ssh-port", 0, "sshd's port (default: what the agent reported, else 22)")
	forward := fs.String("local-forwarding", "", "ssh -L specification, e.g. 8080:localhost:80")
	if err := fs.parse(args, true); err != nil {
		return err
	}
	rest := fs.Args()
	target := *id
	if target == "" {
		if len(rest) == 0 {
			return usagef("ssh: name an instance by id or Name tag")
		}
		target, rest = rest[0], rest[1:]
		// Flags may follow the instance: postern ssh web-1 --os-user deploy -- uptime.
		if err := fs.parse(rest, true); err != nil {
			return err
		}
		rest = fs.Args()
	}
	eice, err := parseEICEOptions(*eiceFlag)
	if err != nil {
		return err
	}
	if err := checkConnectionType(*connType, eice); err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return client.Clean(err)
	}
	dir, err := os.MkdirTemp("", "postern-ssh-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir) // the ephemeral private key goes with it
	// The key pair does not depend on the instance: it is made while the
	// instance is looked up.
	type keyPair struct {
		file, pub string
		err       error
	}
	kp := keyPair{file: *keyFile}
	made := make(chan struct{}) // closed once kp is set
	go func() {
		defer close(made)
		if kp.file == "" {
			kp.file, kp.pub, kp.err = ephemeralKey(dir)
		} else {
			kp.pub, kp.err = publicKeyFor(kp.file)
		}
	}()
	defer func() { <-made }() // whatever happens, the key is written before its directory is removed
	info, err := resolveAndPush(ctx, cfg, target, *osUser, func() (string, error) { <-made; return kp.pub, kp.err })
	if err != nil {
		return client.Clean(err)
	}
	<-made
	key := kp.file
	route, err := chooseRoute(ctx, cfg, info, *connType, eice)
	if err != nil {
		return client.Clean(err)
	}
	var proxyCommand string
	if route.tunnel != nil {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		// ssh runs it with the environment, hence the credentials, of
		// this process.
		proxyCommand = route.tunnel.proxyCommand(self, sshPort(*port, info))
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := writeKnownHosts(knownHosts, info.InstanceId, info.HostKeys); err != nil {
		return err
	}
	sshArgs := []string{
		"-i", key, "-o", "IdentitiesOnly=yes",
		"-o", "HostKeyAlias=" + info.InstanceId, "-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
		"-p", strconv.Itoa(sshPort(*port, info)), "-l", *osUser,
	}
	if proxyCommand != "" {
		sshArgs = append(sshArgs, "-o", "ProxyCommand="+proxyCommand)
	}
	if *forward != "" {
		sshArgs = append(sshArgs, "-L", *forward)
	}
	sshArgs = append(sshArgs, route.addr)
	sshArgs = append(sshArgs, rest...)
	return m.runSSHClient(sshArgs)
}

// sshPort is the port sshd listens on: the flag's, else what the agent
// reported, else 22.
func sshPort(flagPort int, info *connectInfo) int {
	switch {
	case flagPort != 0:
		return flagPort
	case info.SshPort != 0:
		return info.SshPort
	}
	return 22
}

// runSSHClient runs the real OpenSSH client in the foreground and makes
// its exit status ours. The terminal's signals belong to ssh while it
// runs.
func (m *Main) runSSHClient(args []string) error {
	path, err := exec.LookPath("ssh")
	if err != nil {
		return fmt.Errorf("OpenSSH's ssh client is not installed (apt-get install openssh-client)")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = m.Stdin, m.Stdout, m.Stderr
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT)
	defer signal.Reset(syscall.SIGINT, syscall.SIGQUIT)
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitError{code: ee.ExitCode()}
	}
	return err
}

// knownHostsPath is where proxy keeps the host keys agents reported.
func (m *Main) knownHostsPath() string {
	if d := m.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "postern", "known_hosts")
	}
	return filepath.Join(m.Getenv("HOME"), ".config", "postern", "known_hosts")
}

// defaultIdentity is the first of the usual OpenSSH keys that exists.
func (m *Main) defaultIdentity() string {
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa", "id_ed25519_sk", "id_ecdsa_sk"} {
		p := filepath.Join(m.Getenv("HOME"), ".ssh", n)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(m.Getenv("HOME"), ".ssh", "id_ed25519")
}

func runProxy(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("proxy", "proxy [--os-user USER] [--identity-file KEY] HOST PORT",
		"# in ~/.ssh/config (postern ssh-config prints it):\n"+
			"Host i-* web-*\n    ProxyCommand postern proxy --os-user %r %h %p")
	osUser := fs.String("os-user", m.defaultOSUser(), "the OS user the key is pushed for (ssh's %r)")
	identity := fs.String("identity-file", m.defaultIdentity(), "private key whose public half is pushed")
	connType := fs.String("connection-type", "auto", connectionTypeHelp)
	eiceFlag := fs.String("eice-options", "", eiceOptionsHelp)
	knownHosts := fs.String("known-hosts", m.knownHostsPath(), "file that receives the host keys the agent reported")
	if err := fs.parse(args, true); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("proxy: want HOST PORT (ssh passes %%h %%p)")
	}
	host, portArg := fs.Arg(0), fs.Arg(1)
	port, err := strconv.Atoi(portArg)
	if err != nil || port < 1 || port > 65535 {
		return usagef("proxy: port %q is not a port number", portArg)
	}
	eice, err := parseEICEOptions(*eiceFlag)
	if err != nil {
		return err
	}
	if err := checkConnectionType(*connType, eice); err != nil {
		return err
	}
	pub, err := publicKeyFor(*identity)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return client.Clean(err)
	}
	info, err := resolveAndPush(ctx, cfg, host, *osUser, func() (string, error) { return pub, nil })
	if err != nil {
		return client.Clean(err)
	}
	route, err := chooseRoute(ctx, cfg, info, *connType, eice)
	if err != nil {
		return client.Clean(err)
	}
	// ssh checks the host key under the name it was given (%h).
	if err := writeKnownHosts(*knownHosts, host, info.HostKeys); err != nil {
		return err
	}
	if route.tunnel != nil {
		ws, err := route.tunnel.opener(cfg, port)(ctx)
		if err != nil {
			return client.Clean(err)
		}
		return client.Clean(opentunnel.Relay(ctx, ws, m.Stdin, m.Stdout))
	}
	conn, err := (&net.Dialer{Timeout: 15 * time.Second}).DialContext(ctx, "tcp", net.JoinHostPort(route.addr, portArg))
	if err != nil {
		return err
	}
	return pipe(conn, m.Stdin, m.Stdout)
}

// Help for the flags ssh and proxy share.
const (
	connectionTypeHelp = "auto (the public address; else the private one through an Instance Connect Endpoint of the instance's VPC, or directly when it has none), direct, or eice (always through an endpoint)"
	eiceOptionsHelp    = "endpoint options: endpointId=eice-…,dnsName=…,maxTunnelDuration=SECONDS (implies the endpoint)"
)

// pipe copies stdin to conn and conn to stdout until both directions end.
func pipe(conn net.Conn, in io.Reader, out io.Writer) error {
	defer conn.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, in)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- err
	}()
	_, err := io.Copy(out, conn)
	if err == nil {
		// The server closed: ssh has what it needs; don't wait on stdin.
		return nil
	}
	<-done
	return err
}

func runSSHConfig(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("ssh-config", "ssh-config [--identity-file KEY] [--user USER]",
		"postern ssh-config >> ~/.ssh/config\n"+
			"ssh web-1 && scp file web-1: && rsync -a dir/ web-1:dir/")
	identity := fs.String("identity-file", m.defaultIdentity(), "private key ssh offers (its public half is pushed)")
	osUser := fs.String("user", "", "OS user to log in as (default: ssh's, i.e. your login name)")
	if err := fs.parse(args, false); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var names []string
	if cfg, err := connect(ctx); err == nil {
		if out, err := client.EC2(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
			{Name: aws.String("instance-state-name"), Values: []string{"running", "pending", "stopped"}},
		}}); err == nil {
			seen := map[string]bool{}
			for _, r := range out.Reservations {
				for _, i := range r.Instances {
					if n := ec2TagValue(i.Tags, "Name"); n != "" && !seen[n] && !strings.ContainsAny(n, " \t*?!") {
						seen[n] = true
						names = append(names, n)
					}
				}
			}
		}
	}
	sort.Strings(names)
	fmt.Fprintf(m.Stdout, "# Postern: ssh, scp, sftp, rsync and Ansible reach instances by id or Name tag.\n")
	fmt.Fprintf(m.Stdout, "# Each connection pushes your key afresh, so the 60-second window never gets in the way.\n")
	fmt.Fprintf(m.Stdout, "# Instances without a public address are reached through an Instance Connect Endpoint of their VPC.\n")
	fmt.Fprintf(m.Stdout, "# The AWS_* variables of 'postern env' must be set where ssh runs.\n")
	fmt.Fprintf(m.Stdout, "Host i-*%s\n", prefixEach(" ", names))
	if *osUser != "" {
		fmt.Fprintf(m.Stdout, "    User %s\n", *osUser)
	}
	fmt.Fprintf(m.Stdout, "    ProxyCommand %s proxy --os-user %%r --identity-file %s %%h %%p\n", shellQuote(self), shellQuote(*identity))
	fmt.Fprintf(m.Stdout, "    IdentityFile %s\n    IdentitiesOnly yes\n", *identity)
	fmt.Fprintf(m.Stdout, "    UserKnownHostsFile %s\n    StrictHostKeyChecking yes\n", m.knownHostsPath())
	return nil
}

func prefixEach(sep string, ss []string) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(sep + s)
	}
	return b.String()
}
