package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/atomicfile"
	"github.com/postern-dev/postern/client"
)

// This file holds what send-ssh-public-key, ssh and proxy share: finding
// the instance, pushing a key, and trusting exactly the host keys its agent
// reported.

// connectInfo is GetInstanceConnectInfo's answer.
type connectInfo struct {
	InstanceId       string
	Name             string
	State            string
	PrivateIpAddress string
	PublicIpAddress  string
	VpcId            string
	SubnetId         string
	SshPort          int
	HostKeys         []string
}

// resolveAndPush turns an instance id or Name tag (which must match exactly
// one running instance) into the instance's connection facts, and pushes
// it the public key that publicKey returns (it may still be making it).
// The facts and the push are asked for at the same time once the instance
// id is known: a login waits for the slower of the two calls, not for
// both. An error of the lookup wins over one of the push, and calls the
// push off.
func resolveAndPush(ctx context.Context, cfg aws.Config, target, osUser string, publicKey func() (string, error)) (*connectInfo, error) {
	id, err := instanceID(ctx, cfg, target)
	if err != nil {
		return nil, err
	}
	pub, err := publicKey()
	if err != nil {
		return nil, err
	}
	pushCtx, cancelPush := context.WithCancel(ctx)
	defer cancelPush()
	pushed := make(chan error, 1)
	go func() {
		_, err := pushKey(pushCtx, cfg, id, osUser, pub)
		pushed <- err
	}()
	info, err := connectInfoOf(ctx, cfg, id)
	if err != nil {
		// No login follows: the push is called off rather than waited
		// for (an agent that is offline keeps it waiting for seconds).
		cancelPush()
		<-pushed
		return nil, err
	}
	if err := <-pushed; err != nil {
		return nil, err
	}
	return info, nil
}

// instanceID returns target if it is an instance id, else the id of the
// one running instance whose Name tag is target.
func instanceID(ctx context.Context, cfg aws.Config, target string) (string, error) {
	if strings.HasPrefix(target, "i-") {
		return target, nil
	}
	out, err := client.EC2(cfg).DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:Name"), Values: []string{target}},
		{Name: aws.String("instance-state-name"), Values: []string{"running", "pending"}},
	}})
	if err != nil {
		return "", err
	}
	var ids []string
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
	}
	sort.Strings(ids)
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("no running instance is named %q", target)
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%d running instances are named %q (%s); name one by id", len(ids), target, strings.Join(ids, ", "))
}

// connectInfoOf asks the server how to reach instance id.
func connectInfoOf(ctx context.Context, cfg aws.Config, id string) (*connectInfo, error) {
	var info connectInfo
	if err := client.CallJSON(ctx, cfg, "Postern_20261101", "postern", "GetInstanceConnectInfo", map[string]string{"InstanceId": id}, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// pushKey sends a public key line with SendSSHPublicKey.
func pushKey(ctx context.Context, cfg aws.Config, instanceID, osUser, publicKey string) (*ec2instanceconnect.SendSSHPublicKeyOutput, error) {
	return ec2instanceconnect.NewFromConfig(cfg).SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(instanceID), InstanceOSUser: aws.String(osUser), SSHPublicKey: aws.String(publicKey),
	})
}

// readKeyArg reads a --ssh-public-key value: file://PATH or the key text.
func readKeyArg(v string) (string, error) {
	if p, ok := strings.CutPrefix(v, "file://"); ok {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(v), nil
}

// publicKeyFor returns the public key line of a private key file: from
// FILE.pub when present, else derived from an unencrypted private key.
func publicKeyFor(privateKeyFile string) (string, error) {
	if b, err := os.ReadFile(privateKeyFile + ".pub"); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b, err := os.ReadFile(privateKeyFile)
	if err != nil {
		return "", err
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return "", fmt.Errorf("%s: cannot derive the public key (%v); put it beside the key as %s.pub", privateKeyFile, err, privateKeyFile)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}

// ephemeralKey writes a new Ed25519 key (0600) into dir and returns the
// private key path and the public key line.
func ephemeralKey(dir string) (string, string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "postern ephemeral key")
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return "", "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	return path, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " postern-ephemeral", nil
}

// writeKnownHosts makes path name exactly the reported host keys for
// alias, keeping other aliases' lines. A changed host key therefore makes
// ssh refuse the host instead of asking.
func writeKnownHosts(path, alias string, hostKeys []string) error {
	if len(hostKeys) == 0 {
		return fmt.Errorf("the instance's agent reported no SSH host keys; cannot verify the host")
	}
	var lines []string
	if b, err := os.ReadFile(path); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] != alias {
				lines = append(lines, l)
			}
		}
	}
	for _, k := range hostKeys {
		lines = append(lines, alias+" "+k)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func runSendSSHPublicKey(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSetOutput("send-ssh-public-key", "send-ssh-public-key --instance-id ID --instance-os-user USER --ssh-public-key file://KEY.pub|KEY",
		"postern send-ssh-public-key --instance-id i-0123456789abcdef0 --instance-os-user alice \\\n"+
			"    --ssh-public-key file://$HOME/.ssh/id_ed25519.pub\n"+
			"ssh -i ~/.ssh/id_ed25519 alice@<address>   # within 60 seconds", "json")
	id := fs.String("instance-id", "", "the instance")
	user := fs.String("instance-os-user", "", "the OS user the key may log in as")
	key := fs.String("ssh-public-key", "", "the public key: file://PATH or the key text")
	fs.String("availability-zone", "", "accepted for compatibility with the AWS CLI")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *id == "" || *user == "" || *key == "" {
		return usagef("send-ssh-public-key: --instance-id, --instance-os-user and --ssh-public-key are required")
	}
	pub, err := readKeyArg(*key)
	if err != nil {
		return err
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	out, err := pushKey(ctx, cfg, *id, *user, pub)
	if err != nil {
		return err
	}
	if fs.json() {
		return m.printJSON(map[string]any{"RequestId": aws.ToString(out.RequestId), "Success": out.Success})
	}
	fmt.Fprintf(m.Stdout, "Key pushed to %s for %s (request %s); it is usable for 60 seconds.\n", *id, *user, aws.ToString(out.RequestId))
	return nil
}
