package keyless

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go"
	"golang.org/x/crypto/ssh"

	"github.com/postern-dev/postern/agent"
)

// TestKeylessSSH is issue 3's "Done when" end to end with real OpenSSH:
// one instance namespace, one server, and the steps below in order (the
// last ones stop, restart and finally deregister the instance).
func TestKeylessSSH(t *testing.T) {
	w := newWorld(t)
	if !t.Run("Activation", w.testActivation) {
		t.FailNow() // without a registered instance nothing else means anything
	}
	w.startAgent(t)
	w.startSSHD(t)
	if !t.Run("InstanceReported", w.testInstanceReported) {
		t.FailNow()
	}
	t.Run("PosternSSH", w.testPosternSSH)
	t.Run("KeyForAliceDoesNotOpenBob", w.testKeyForAliceDoesNotOpenBob)
	t.Run("KeyExpires", w.testKeyExpires)
	t.Run("SocketRefusesStrangers", w.testSocketRefusesStrangers)
	t.Run("OSUserPolicy", w.testOSUserPolicy)
	t.Run("ResourceTagPolicy", w.testResourceTagPolicy)
	t.Run("RealClients", w.testRealClients)
	t.Run("BadKeys", w.testBadKeys)
	t.Run("UnknownInstance", w.testUnknownInstance)
	t.Run("BadOSUser", w.testBadOSUser)
	t.Run("SSHConfigScpRsync", w.testSSHConfigScpRsync)
	t.Run("Lifecycle", w.testLifecycle)
}

// testActivation registers the instance: a wrong code is refused, audited
// and does not count against the registration limit of 1; the right code
// then registers; using it again is refused.
func (w *world) testActivation(t *testing.T) {
	w.createActivation(t)
	wrongCode := "WRONG" + strings.ToUpper(randomHex(t, 10))

	r := w.register(t, wrongCode, filepath.Join(w.runDir, "state-wrong"))
	if r.Code == 0 {
		t.Fatalf("agent register with a wrong activation code succeeded: %s", r)
	}
	if !strings.Contains(r.Stderr, "InvalidActivation") {
		t.Errorf("agent register with a wrong code: stderr %q does not say InvalidActivation", r.Stderr)
	}
	if _, err := os.Stat(w.helperConfig); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused registration wrote the helper config %s (stat: %v)", w.helperConfig, err)
	}
	if got := w.registrations(t); got != 0 {
		t.Errorf("after a wrong code the activation counts %d registrations, want 0", got)
	}
	ev := w.findAuditEvent(t, "RegisterManagedInstance", true, func(rec map[string]any) bool {
		return str(rec, "requestParameters", "activationId") == w.activationID
	})
	if ev == nil {
		t.Errorf("the refused registration is not in the audit trail (RegisterManagedInstance, errors only, activationId %s)", w.activationID)
	} else if code := str(ev, "errorCode"); code == "" {
		t.Errorf("the audit record of the refused registration has no errorCode: %v", ev)
	}

	r = w.register(t, w.activationCode, w.stateDir)
	if r.Code != 0 {
		t.Fatalf("agent register with the right code after a wrong one (limit 1): %s", r)
	}
	w.instanceID = regexp.MustCompile(`\bi-[0-9a-f]{8,}\b`).FindString(r.Stdout)
	if w.instanceID == "" {
		t.Fatalf("agent register printed no instance id: %s", r)
	}
	if got := w.registrations(t); got != 1 {
		t.Errorf("after the registration the activation counts %d registrations, want 1", got)
	}
	hc, err := agent.ReadHelperConfig(w.helperConfig)
	if err != nil {
		t.Fatalf("helper config: %v", err)
	}
	if hc.InstanceID != w.instanceID || hc.Socket != w.socket {
		t.Errorf("helper config pins %q and socket %q, want %q and %q", hc.InstanceID, hc.Socket, w.instanceID, w.socket)
	}
	if fi, err := os.Stat(w.helperConfig); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("helper config mode: %v (%v), want 0644 so that the helper user can read it", fi.Mode().Perm(), err)
	}
	before, _ := os.ReadFile(w.helperConfig)

	// The code is spent: a second host may not register with it.
	r = w.register(t, w.activationCode, filepath.Join(w.runDir, "state-again"))
	if r.Code == 0 {
		t.Errorf("a second registration beyond the limit of 1 succeeded: %s", r)
	} else if !strings.Contains(r.Stderr, "RegistrationLimitExceeded") {
		t.Errorf("a registration beyond the limit: stderr %q does not say RegistrationLimitExceeded", r.Stderr)
	}
	if after, _ := os.ReadFile(w.helperConfig); !bytes.Equal(before, after) {
		t.Errorf("a refused registration rewrote the helper config")
	}
	var list struct{ Instances []instance }
	w.mustPosternJSON(t, &list, "instance", "list", "--filter", "tag:Name="+w.instanceName)
	if len(list.Instances) != 1 {
		t.Errorf("%d instances named %s, want exactly the one registered", len(list.Instances), w.instanceName)
	}

	// No activation code, right or wrong, is written to the audit trail.
	export := w.mustPostern(t, "audit", "export")
	for what, secret := range map[string]string{"activation code": w.activationCode, "wrong activation code": wrongCode} {
		if strings.Contains(export, secret) {
			t.Errorf("the audit export contains the %s", what)
		}
	}
}

// registrations returns RegistrationsCount of this run's activation.
func (w *world) registrations(t *testing.T) int {
	t.Helper()
	var out struct {
		ActivationList []struct {
			ActivationId       string
			RegistrationLimit  int
			RegistrationsCount int
		}
	}
	w.mustPosternJSON(t, &out, "activation", "list")
	for _, a := range out.ActivationList {
		if a.ActivationId == w.activationID {
			if a.RegistrationLimit != 1 {
				t.Errorf("activation %s: limit %d, want 1", a.ActivationId, a.RegistrationLimit)
			}
			return a.RegistrationsCount
		}
	}
	t.Fatalf("activation list does not show %s", w.activationID)
	return -1
}

// testInstanceReported checks what the agent reported: running, the
// namespace's address, inside the admin's subnet, named by the activation.
func (w *world) testInstanceReported(t *testing.T) {
	w.waitState(t, "running", 30*time.Second)
	in := w.describe(t, w.instanceID)
	if in.PrivateIpAddress != w.instIP || in.SubnetId != w.subnetID || in.VpcId != w.vpcID {
		t.Errorf("instance %s: address %s, subnet %s, VPC %s; want %s in %s of %s", w.instanceID,
			in.PrivateIpAddress, in.SubnetId, in.VpcId, w.instIP, w.subnetID, w.vpcID)
	}
	tags := map[string]string{}
	for _, tg := range in.Tags {
		tags[tg.Key] = tg.Value
	}
	if tags["Name"] != w.instanceName || tags["team"] != "keyless" {
		t.Errorf("instance tags %v, want Name=%s and team=keyless from the activation", tags, w.instanceName)
	}
}

// testPosternSSH logs in with `postern ssh`: an ephemeral key, pushed,
// a known_hosts entry from the agent's report, then the real ssh.
func (w *world) testPosternSSH(t *testing.T) {
	r := retrySlow(t, "postern ssh", func() result {
		return w.postern(t, "ssh", "--instance-id", w.instanceID, "--os-user", "alice", "--", "id", "-un")
	})
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alice" {
		t.Fatalf("postern ssh --instance-id %s --os-user alice -- id -un: %s\nsshd log:\n%s", w.instanceID, r, w.sshd.Stderr)
	}
	r = retrySlow(t, "postern ssh by name", func() result {
		return w.postern(t, "ssh", w.instanceName, "--os-user", "bob", "--", "id", "-un")
	})
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "bob" {
		t.Errorf("postern ssh %s (by Name tag) --os-user bob -- id -un: %s", w.instanceName, r)
	}
	r = retrySlow(t, "postern ssh -- 'exit 7'", func() result {
		return w.postern(t, "ssh", "--instance-id", w.instanceID, "--os-user", "alice", "--", "exit 7")
	})
	if r.Code != 7 {
		t.Errorf("postern ssh -- 'exit 7': exit status %d, want the remote one, 7\n%s", r.Code, r)
	}
}

// testKeyForAliceDoesNotOpenBob pushes a key for alice and tries it on bob
// (refused) and on alice (accepted) while it is alive.
func (w *world) testKeyForAliceDoesNotOpenBob(t *testing.T) {
	k := newKey(t)
	w.loginAfterPush(t, "key pushed for alice", k, "alice", func() {
		w.mustPush(t, w.adminEIC(), "alice", k.Pub)
		r := w.ssh(t, k, "bob", "id", "-un")
		if r.Code == 0 {
			t.Errorf("a key pushed for alice logged in as bob: %s", r)
		} else if !strings.Contains(r.Stderr, "Permission denied") {
			t.Errorf("ssh bob with alice's key: want Permission denied: %s", r)
		}
	})
}

// testKeyExpires logs in with a pushed key, then polls until the same key
// is refused, and checks that this happened only after its lifetime.
func (w *world) testKeyExpires(t *testing.T) {
	k := newKey(t)
	var pushed time.Time
	w.loginAfterPush(t, "fresh key", k, "alice", func() {
		pushed = time.Now()
		w.mustPush(t, w.adminEIC(), "alice", k.Pub)
	})
	var r result
	waitFor(t, "the expired key to be refused", keyLifetime+30*time.Second, func() bool {
		r = w.ssh(t, k, "alice", "id", "-un")
		return r.Code != 0
	})
	if took := time.Since(pushed); took < keyLifetime {
		t.Errorf("the key was refused %s after the push, before its lifetime of %s ended: %s", took, keyLifetime, r)
	}
	if !strings.Contains(r.Stderr, "Permission denied") {
		t.Errorf("login with the expired key: want Permission denied: %s", r)
	}
	// The agent forgets expired records: nothing is left to ask for.
	waitFor(t, "the agent to drop alice's expired records", 30*time.Second, func() bool {
		recs, err := agent.QueryAgent(w.socket, "alice", 3*time.Second)
		if err != nil {
			t.Fatalf("ask the agent as root: %v", err)
		}
		return len(recs) == 0
	})
}

// testSocketRefusesStrangers asks the agent's socket as the helper user
// (answered), as nobody (cannot even connect) and as a user in the
// helper's group (connected, then refused by its uid); the real helper
// prints the key only for the helper user.
func (w *world) testSocketRefusesStrangers(t *testing.T) {
	k := newKey(t)
	helperUID, helperGID := lookupIDs(t, w.helperUser)
	strangerUID, strangerGID := lookupIDs(t, w.strangerUser)
	nobodyUID, nobodyGID := lookupIDs(t, "nobody")
	if strangerGID != helperGID {
		t.Fatalf("the stranger's group %d is not the helper's %d", strangerGID, helperGID)
	}
	fp := fingerprint(t, k.Pub)
	w.freshKey(t, "helper user asks the socket", func() {
		w.mustPush(t, w.adminEIC(), "alice", k.Pub)
	}, func() (string, bool) {
		res := w.probe(t, helperUID, helperGID, "alice")
		if res.Error != "" || res.Records < 1 {
			return fmt.Sprintf("the helper user got %+v, want at least one record", res), false
		}
		out := w.asUser(t, helperUID, helperGID, w.helperCmd[0], append(w.helperCmd[1:], "--config", w.helperConfig, "alice", fp)...)
		if out.Code != 0 || !strings.Contains(out.Stdout, strings.Fields(k.Pub)[1]) || !strings.Contains(out.Stdout, `expiry-time="`) {
			return fmt.Sprintf("postern authorized-keys as the helper user: %s", out), false
		}
		return "", true
	})

	// The key is alive or was a moment ago; the strangers must get nothing
	// whichever it is, so timing does not matter from here on.
	res := w.probe(t, nobodyUID, nobodyGID, "alice")
	if res.Error == "" || res.Records != 0 || !strings.Contains(res.Error, "permission denied") {
		t.Errorf("nobody asked the agent's socket and got %+v; want permission denied and no records", res)
	}
	out := w.asUser(t, nobodyUID, nobodyGID, w.helperCmd[0], append(w.helperCmd[1:], "--config", w.helperConfig, "alice")...)
	if out.Code != 0 || strings.TrimSpace(out.Stdout) != "" {
		t.Errorf("postern authorized-keys as nobody: want nothing printed and exit 0, got %s", out)
	}

	from := w.agent.Stderr.Len()
	res = w.probe(t, strangerUID, strangerGID, "alice")
	if res.Error == "" || res.Records != 0 {
		t.Errorf("a user in the helper's group but not the helper asked the socket and got %+v; want a refusal", res)
	}
	w.agent.await(t, from, "refused a helper connection from an unexpected user", 10*time.Second)
}

// probe runs the socket probe (a copy of this test binary) as uid:gid with
// no supplementary groups.
func (w *world) probe(t *testing.T, uid, gid uint32, osUser string) probeResult {
	t.Helper()
	cmd := exec.Command(w.probeBin)
	cmd.Env = []string{probeEnv + "=" + w.socket, "POSTERN_KEYLESS_PROBE_USER=" + osUser}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	r := run(t, cmd)
	var res probeResult
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &res) != nil {
		t.Fatalf("socket probe as uid %d: %s", uid, r)
	}
	if res.UID != int(uid) {
		t.Fatalf("the socket probe ran as uid %d, want %d", res.UID, uid)
	}
	return res
}

// asUser runs a command as uid:gid with no supplementary groups.
func (w *world) asUser(t *testing.T, uid, gid uint32, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	return run(t, cmd)
}

// testOSUserPolicy: a user whose policy allows only ec2:osuser=ubuntu is
// denied root, and the denial is in the audit trail.
func (w *world) testOSUserPolicy(t *testing.T) {
	c := w.userWithPolicy(t, "ubuntu-only", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
		"Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*",
		"Condition":{"StringEquals":{"ec2:osuser":"ubuntu"}}}]}`)
	k := newKey(t)
	_, err := w.push(t, c, "root", k.Pub)
	code, reqID := apiError(t, err)
	if code != "AccessDeniedException" {
		t.Fatalf("push for root under an ec2:osuser=ubuntu policy: %s, want AccessDeniedException", code)
	}
	// The same user may push for ubuntu: the condition, not the user, decided.
	if _, err := w.push(t, c, "ubuntu", k.Pub); err != nil {
		t.Errorf("push for ubuntu under an ec2:osuser=ubuntu policy: %v", err)
	}

	ev := w.findAuditEvent(t, "SendSSHPublicKey", true, func(rec map[string]any) bool {
		return str(rec, "requestID") == reqID
	})
	if ev == nil {
		t.Fatalf("the denied push (request %s) is not among `postern audit lookup --event-name SendSSHPublicKey --errors-only`", reqID)
	}
	if code := str(ev, "errorCode"); !strings.HasPrefix(code, "AccessDenied") {
		t.Errorf("audit record of the denied push: errorCode %q, want AccessDenied…", code)
	}
	if u := str(ev, "userIdentity", "userName"); u != "ubuntu-only" {
		t.Errorf("audit record of the denied push: userIdentity.userName %q, want ubuntu-only", u)
	}
	if !strings.Contains(jsonText(ev["requestParameters"]), `"root"`) {
		t.Errorf("audit record of the denied push does not name the OS user root: %s", jsonText(ev["requestParameters"]))
	}
	if !strings.Contains(jsonText(ev), w.instanceID) {
		t.Errorf("audit record of the denied push does not name the instance %s", w.instanceID)
	}
}

// testResourceTagPolicy: a policy conditioned on aws:ResourceTag/env=prod
// allows a push only while the instance carries that tag.
func (w *world) testResourceTagPolicy(t *testing.T) {
	c := w.userWithPolicy(t, "prod-only", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
		"Action":"ec2-instance-connect:SendSSHPublicKey","Resource":"*",
		"Condition":{"StringEquals":{"aws:ResourceTag/env":"prod"}}}]}`)
	k := newKey(t)
	if _, err := w.push(t, c, "alice", k.Pub); err == nil {
		t.Errorf("push to an untagged instance under an env=prod policy succeeded")
	} else if code, _ := apiError(t, err); code != "AccessDeniedException" {
		t.Errorf("push to an untagged instance: %s, want AccessDeniedException", code)
	}

	w.mustPostern(t, "tag", "add", w.instanceID, "--tag", "env=prod")
	w.loginAfterPush(t, "key pushed to the env=prod instance", k, "alice", func() {
		w.mustPush(t, c, "alice", k.Pub)
	})

	w.mustPostern(t, "tag", "add", w.instanceID, "--tag", "env=dev")
	if _, err := w.push(t, c, "alice", k.Pub); err == nil {
		t.Errorf("push to an env=dev instance under an env=prod policy succeeded")
	} else if code, _ := apiError(t, err); code != "AccessDeniedException" {
		t.Errorf("push to an env=dev instance: %s, want AccessDeniedException", code)
	}
	w.mustPostern(t, "tag", "remove", w.instanceID, "--key", "env")
}

// userWithPolicy creates an IAM user with one inline policy and an access
// key, and returns an SDK client signed with that key.
func (w *world) userWithPolicy(t *testing.T, name, policy string) *ec2instanceconnect.Client {
	t.Helper()
	w.mustPostern(t, "user", "create", name)
	w.mustPostern(t, "policy", "put", "--user", name, "--name", "connect", "--document", policy)
	var key struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey string }
	}
	w.mustPosternJSON(t, &key, "access-key", "create", "--user", name)
	return w.eic(key.AccessKey.AccessKeyId, key.AccessKey.SecretAccessKey)
}

// testRealClients pushes with the AWS SDK for Go v2, boto3 and the aws
// CLI, each configured as its users would configure it, and logs in with
// each pushed key.
func (w *world) testRealClients(t *testing.T) {
	t.Run("GoSDK", func(t *testing.T) {
		k := newKey(t)
		var reqID string
		w.loginAfterPush(t, "key pushed with the Go SDK", k, "alice", func() {
			reqID = w.mustPush(t, w.adminEIC(), "alice", k.Pub)
		})
		// Every push is audited with caller, instance, OS user and key.
		ev := w.findAuditEvent(t, "SendSSHPublicKey", false, func(rec map[string]any) bool { return str(rec, "requestID") == reqID })
		if ev == nil {
			t.Fatalf("the push (request %s) is not in the audit trail", reqID)
		}
		text := jsonText(ev)
		for what, want := range map[string]string{"instance": w.instanceID, "OS user": `"alice"`, "key fingerprint": fingerprint(t, k.Pub), "caller": w.env["AWS_ACCESS_KEY_ID"]} {
			if !strings.Contains(text, want) {
				t.Errorf("the audit record of the push does not hold the %s (%s): %s", what, want, text)
			}
		}
		if code := str(ev, "errorCode"); code != "" {
			t.Errorf("the audit record of a successful push has errorCode %q", code)
		}
	})
	t.Run("Boto3", func(t *testing.T) {
		script, err := filepath.Abs(filepath.Join("testdata", "boto3_push.py"))
		if err != nil {
			t.Fatal(err)
		}
		k := newKey(t)
		w.loginAfterPush(t, "key pushed with boto3", k, "alice", func() {
			// Configured only by what `postern env` printed: a clean
			// environment with a HOME of its own.
			cmd := command(t, w.env, "python3", script, w.instanceID, "alice", k.Path+".pub")
			cmd.Dir = t.TempDir()
			r := run(t, cmd)
			var out struct {
				RequestId string
				Success   bool
			}
			if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &out) != nil || !out.Success || out.RequestId == "" {
				t.Fatalf("boto3 send_ssh_public_key: %s", r)
			}
		})
	})
	t.Run("PosternSendSSHPublicKey", func(t *testing.T) {
		k := newKey(t)
		w.loginAfterPush(t, "key pushed with postern send-ssh-public-key", k, "alice", func() {
			var out struct {
				RequestId string
				Success   bool
			}
			w.mustPosternJSON(t, &out, "send-ssh-public-key", "--instance-id", w.instanceID,
				"--instance-os-user", "alice", "--ssh-public-key", "file://"+k.Path+".pub")
			if !out.Success || out.RequestId == "" {
				t.Fatalf("postern send-ssh-public-key answered %+v", out)
			}
		})
	})
	t.Run("AWSCLI", func(t *testing.T) {
		k := newKey(t)
		w.loginAfterPush(t, "key pushed with the aws CLI", k, "alice", func() {
			cmd := command(t, w.env, "aws", "ec2-instance-connect", "send-ssh-public-key",
				"--instance-id", w.instanceID, "--instance-os-user", "alice", "--ssh-public-key", "file://"+k.Path+".pub")
			cmd.Dir = t.TempDir()
			r := run(t, cmd)
			var out struct {
				RequestId string
				Success   bool
			}
			if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &out) != nil || !out.Success || out.RequestId == "" {
				t.Fatalf("aws ec2-instance-connect send-ssh-public-key: %s", r)
			}
		})
	})
}

// testBadKeys: a short RSA key, a private key pasted by mistake, garbage
// and an over-long key get InvalidArgsException, and the private key text
// reaches neither the audit trail nor the server's log.
func (w *world) testBadKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := newEd25519(t)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	privText := string(pem.EncodeToMemory(blk))
	var privLines []string // the secret part: the base64 lines of the PEM body
	for _, l := range strings.Split(privText, "\n") {
		if len(l) >= 20 && !strings.HasPrefix(l, "-----") {
			privLines = append(privLines, l)
		}
	}
	if len(privLines) == 0 {
		t.Fatal("the private key has no body lines")
	}
	garbage := "ssh-ed25519 " + strings.Repeat("not base64 at all! ", 6)
	cases := []struct{ name, key string }{
		{"1024-bit RSA", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rsaPub)))},
		{"private key", privText},
		{"garbage", garbage},
		{"over 4096 characters", "ssh-ed25519 " + strings.Repeat("A", 5000)},
	}
	reqIDs := map[string]string{}
	for _, c := range cases {
		_, err := w.push(t, w.adminEIC(), "alice", c.key)
		code, reqID := apiError(t, err)
		if code != "InvalidArgsException" {
			t.Errorf("push of a %s: %s, want InvalidArgsException (%v)", c.name, code, err)
		}
		if c.name == "private key" && containsAny(err.Error(), privLines) {
			t.Errorf("the error answered to a pasted private key quotes the key: %v", err)
		}
		reqIDs[reqID] = c.name
	}

	export := w.mustPostern(t, "audit", "export")
	if containsAny(export, privLines) {
		t.Errorf("the audit export contains the text of the private key pushed by mistake")
	}
	if containsAny(w.server.Stderr.String()+w.server.Stdout.String(), privLines) {
		t.Errorf("the server's log contains the text of the private key pushed by mistake")
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(export), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			t.Fatalf("audit export line is not JSON: %.200s", line)
		}
		if name, ok := reqIDs[str(rec, "requestID")]; ok {
			seen[name] = true
			if code := str(rec, "errorCode"); code != "InvalidArgsException" {
				t.Errorf("audit record of the %s push: errorCode %q, want InvalidArgsException", name, code)
			}
		}
	}
	for _, c := range cases {
		if !seen[c.name] {
			t.Errorf("the refused push of a %s is not in the audit export", c.name)
		}
	}
}

// testUnknownInstance pushes to an instance that does not exist.
func (w *world) testUnknownInstance(t *testing.T) {
	k := newKey(t)
	id := "i-0" + randomHex(t, 8)
	_, err := w.push(t, w.adminEIC(), "alice", k.Pub, id)
	if code, _ := apiError(t, err); code != "EC2InstanceNotFoundException" {
		t.Errorf("push to unknown %s: %s, want EC2InstanceNotFoundException", id, code)
	}
}

// testBadOSUser pushes for OS user names that are not Linux user names.
func (w *world) testBadOSUser(t *testing.T) {
	k := newKey(t)
	for _, u := range []string{"root;id", "../etc", "-oProxyCommand", strings.Repeat("a", 33)} {
		_, err := w.push(t, w.adminEIC(), u, k.Pub)
		if code, _ := apiError(t, err); code != "InvalidArgsException" {
			t.Errorf("push for OS user %q: %s, want InvalidArgsException", u, code)
		}
	}
}

// testSSHConfigScpRsync uses the block `postern ssh-config` prints with
// ssh, scp and rsync over a span longer than the key lifetime: the first
// push expires in between (a plain ssh with the same key is refused), and
// the later commands still work because every connection pushes afresh.
func (w *world) testSSHConfigScpRsync(t *testing.T) {
	id := newKey(t) // the user's own identity, as ~/.ssh/id_ed25519 would be
	block := w.mustPostern(t, "ssh-config", "--identity-file", id.Path, "--user", "alice")
	if !strings.Contains(block, "Host ") || !strings.Contains(block, w.instanceName) || !strings.Contains(block, "ProxyCommand") {
		t.Fatalf("postern ssh-config printed no Host block naming %s with a ProxyCommand:\n%s", w.instanceName, block)
	}
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	// Where ssh runs, the AWS_* variables of `postern env` are set.
	sshTool := func(name string, args ...string) result {
		t.Helper()
		return retrySlow(t, name, func() result {
			cmd := exec.Command(name, args...)
			cmd.Env = cleanEnv(w.home, w.env)
			return run(t, cmd)
		})
	}
	host := w.instanceName
	start := time.Now()

	r := sshTool("ssh", "-F", cfg, "-o", "BatchMode=yes", host, "id", "-un")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alice" {
		t.Fatalf("ssh -F <postern ssh-config> %s id -un: %s\nsshd log:\n%s", host, r, w.sshd.Stderr)
	}
	local := t.TempDir()
	payload := []byte("postern keyless scp " + randomHex(t, 16) + "\n")
	if err := os.WriteFile(filepath.Join(local, "a.txt"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	r = sshTool("scp", "-F", cfg, "-o", "BatchMode=yes", filepath.Join(local, "a.txt"), host+":"+w.xferDir+"/a.txt")
	if r.Code != 0 {
		t.Fatalf("scp to %s: %s", host, r)
	}
	// The instance shares this machine's file system: read what arrived.
	if got, err := os.ReadFile(filepath.Join(w.xferDir, "a.txt")); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("scp delivered %q (%v), want %q", got, err, payload)
	}

	// Let every key pushed so far expire on the host.
	waitFor(t, "the keys pushed so far to expire on the instance", keyLifetime+30*time.Second, func() bool {
		recs, err := agent.QueryAgent(w.socket, "alice", 3*time.Second)
		return err == nil && len(recs) == 0
	})
	if r := w.ssh(t, id, "alice", "true"); r.Code == 0 {
		t.Fatalf("without the proxy the identity logged in after its pushed key expired; the test proves nothing")
	}

	dir := filepath.Join(local, "tree")
	for i := range 3 {
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "sub", fmt.Sprintf("f%d", i)), bytes.Repeat(payload, i+1), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = sshTool("rsync", "-a", "-e", "ssh -F "+cfg+" -o BatchMode=yes", dir+"/", host+":"+w.xferDir+"/tree/")
	if r.Code != 0 {
		t.Fatalf("rsync to %s after the first key expired: %s", host, r)
	}
	for i := range 3 {
		got, err := os.ReadFile(filepath.Join(w.xferDir, "tree", "sub", fmt.Sprintf("f%d", i)))
		if err != nil || !bytes.Equal(got, bytes.Repeat(payload, i+1)) {
			t.Errorf("rsync delivered sub/f%d = %q (%v)", i, got, err)
		}
	}
	back := filepath.Join(local, "back.txt")
	r = sshTool("scp", "-F", cfg, "-o", "BatchMode=yes", host+":"+w.xferDir+"/a.txt", back)
	if r.Code != 0 {
		t.Fatalf("scp from %s after the first key expired: %s", host, r)
	}
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("scp fetched %q (%v), want %q", got, err, payload)
	}
	r = sshTool("ssh", "-F", cfg, "-o", "BatchMode=yes", w.instanceID, "id", "-un")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "alice" {
		t.Errorf("ssh -F <postern ssh-config> %s (by id) id -un: %s", w.instanceID, r)
	}
	if span := time.Since(start); span <= keyLifetime {
		t.Errorf("the sequence took %s, not longer than the key lifetime %s", span, keyLifetime)
	}
}

// testLifecycle stops the agent (pushes fail with
// EC2InstanceUnavailableException, then the instance becomes stopped and
// pushes fail with EC2InstanceStateInvalidException), restarts it (running,
// logins work again), and deregisters the instance (terminated, pushes
// refused).
func (w *world) testLifecycle(t *testing.T) {
	k := newKey(t)
	if err := w.agent.stop(t); err != nil {
		t.Errorf("the agent exited with %v after SIGTERM; want status 0\n%s", err, w.agent.Stderr)
	}
	_, err := w.push(t, w.adminEIC(), "alice", k.Pub)
	if code, _ := apiError(t, err); code != "EC2InstanceUnavailableException" {
		t.Errorf("push with the agent down: %s, want EC2InstanceUnavailableException (%v)", code, err)
	}
	w.waitState(t, "stopped", agentTimeout+30*time.Second)
	_, err = w.push(t, w.adminEIC(), "alice", k.Pub)
	if code, _ := apiError(t, err); code != "EC2InstanceStateInvalidException" {
		t.Errorf("push to a stopped instance: %s, want EC2InstanceStateInvalidException (%v)", code, err)
	}

	w.startAgent(t)
	w.waitState(t, "running", 30*time.Second)
	w.loginAfterPush(t, "key pushed after the agent came back", k, "alice", func() {
		w.mustPush(t, w.adminEIC(), "alice", k.Pub)
	})

	fromLog := w.agent.Stderr.Len()
	w.mustPostern(t, "instance", "deregister", w.instanceID)
	if got := w.describe(t, w.instanceID).State.Name; got != "terminated" {
		t.Errorf("after deregister the instance is %q, want terminated", got)
	}
	_, err = w.push(t, w.adminEIC(), "alice", k.Pub)
	if code, _ := apiError(t, err); code != "EC2InstanceStateInvalidException" {
		t.Errorf("push to a terminated instance: %s, want EC2InstanceStateInvalidException (%v)", code, err)
	}
	r := w.postern(t, "ssh", "--instance-id", w.instanceID, "--os-user", "alice", "--", "true")
	if r.Code == 0 {
		t.Errorf("postern ssh to a terminated instance succeeded: %s", r)
	}
	// The deregistered instance's agent is cut off and may not come back:
	// a heartbeat must not make a terminated instance running again.
	next := w.agent.await(t, fromLog, "connection to server lost", 30*time.Second)
	w.agent.await(t, next, "connection to server lost", 30*time.Second)
	if got := w.describe(t, w.instanceID).State.Name; got != "terminated" {
		t.Errorf("after its agent tried to come back the deregistered instance is %q, want terminated", got)
	}
	_, err = w.push(t, w.adminEIC(), "alice", k.Pub)
	if code, _ := apiError(t, err); code != "EC2InstanceStateInvalidException" {
		t.Errorf("push to a terminated instance whose agent tried to come back: %s, want EC2InstanceStateInvalidException (%v)", code, err)
	}
	ev := w.findAuditEvent(t, "AgentConnect", true, func(rec map[string]any) bool {
		return str(rec, "requestParameters", "instanceId") == w.instanceID
	})
	if ev == nil {
		t.Errorf("the refused reconnection of the deregistered instance's agent is not in the audit trail")
	}
}

// push sends SSHPublicKey for osUser to the world's instance (or to the
// instance named by id) and returns the request id.
func (w *world) push(t *testing.T, c *ec2instanceconnect.Client, osUser, pub string, id ...string) (string, error) {
	t.Helper()
	inst := w.instanceID
	if len(id) > 0 {
		inst = id[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId: aws.String(inst), InstanceOSUser: aws.String(osUser), SSHPublicKey: aws.String(pub),
	})
	if err != nil {
		return "", err
	}
	if !out.Success || aws.ToString(out.RequestId) == "" {
		t.Fatalf("SendSSHPublicKey answered Success=%v RequestId=%q", out.Success, aws.ToString(out.RequestId))
	}
	return aws.ToString(out.RequestId), nil
}

// mustPush is push that fails the test on an error.
func (w *world) mustPush(t *testing.T, c *ec2instanceconnect.Client, osUser, pub string) string {
	t.Helper()
	id, err := w.push(t, c, osUser, pub)
	if err != nil {
		t.Fatalf("SendSSHPublicKey for %s: %v", osUser, err)
	}
	return id
}

// apiError returns the AWS error code and request id of a failed call; it
// fails the test when err is nil or not an answer of the server.
func apiError(t *testing.T, err error) (code, requestID string) {
	t.Helper()
	if err == nil {
		t.Fatal("the call succeeded; want an AWS error")
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an AWS API error", err)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		requestID = re.ServiceRequestID()
	}
	return ae.ErrorCode(), requestID
}

// findAuditEvent runs `postern audit lookup --event-name NAME [--errors-only]
// --output json` and returns the CloudTrail record of the first event
// that match accepts, or nil.
func (w *world) findAuditEvent(t *testing.T, name string, errorsOnly bool, match func(map[string]any) bool) map[string]any {
	t.Helper()
	args := []string{"audit", "lookup", "--event-name", name, "--max", "1000"}
	if errorsOnly {
		args = append(args, "--errors-only")
	}
	var out struct {
		Events []struct {
			EventName       string
			CloudTrailEvent map[string]any
		}
	}
	w.mustPosternJSON(t, &out, args...)
	for _, ev := range out.Events {
		if ev.EventName != name {
			t.Errorf("audit lookup --event-name %s returned a %s event", name, ev.EventName)
		}
		if errorsOnly && str(ev.CloudTrailEvent, "errorCode") == "" {
			t.Errorf("audit lookup --errors-only returned an event without errorCode: %v", ev.CloudTrailEvent)
		}
		if match(ev.CloudTrailEvent) {
			return ev.CloudTrailEvent
		}
	}
	return nil
}

// freshKey runs push and then check; a failed check fails the test unless
// the attempt took longer than the key lifetime (an overloaded machine),
// in which case it is tried again, three times at most.
func (w *world) freshKey(t *testing.T, what string, push func(), check func() (string, bool)) {
	t.Helper()
	var detail string
	for attempt := 1; attempt <= 3; attempt++ {
		start := time.Now()
		push()
		var ok bool
		if detail, ok = check(); ok {
			return
		}
		took := time.Since(start)
		if took < keyLifetime {
			t.Fatalf("%s: failed %s after the push began (keys live %s): %s\nsshd log:\n%s\nagent log:\n%s",
				what, took.Round(time.Millisecond), keyLifetime, detail, w.sshd.Stderr, w.agent.Stderr)
		}
		t.Logf("%s: push and check took %s, longer than the key lifetime; trying again", what, took.Round(time.Millisecond))
	}
	t.Fatalf("%s: failed three times: %s", what, detail)
}

// retrySlow runs a command that pushes a key and logs in with it (postern
// ssh, or ssh through the postern proxy). A failure that took longer than
// the key lifetime may be the machine's slowness rather than Postern's,
// so it is tried again, three times at most; a quick failure is returned.
func retrySlow(t *testing.T, what string, f func() result) result {
	t.Helper()
	var r result
	for attempt := 1; attempt <= 3; attempt++ {
		start := time.Now()
		if r = f(); r.Code == 0 {
			return r
		}
		took := time.Since(start)
		if took < keyLifetime {
			return r
		}
		t.Logf("%s failed after %s, longer than the key lifetime; trying again: %s", what, took.Round(time.Millisecond), r)
	}
	return r
}

// str digs a string out of nested JSON objects.
func str(m map[string]any, path ...string) string {
	var v any = m
	for _, p := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = obj[p]
	}
	s, _ := v.(string)
	return s
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func containsAny(text string, subs []string) bool {
	for _, s := range subs {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// fingerprint is the SHA256 fingerprint of an authorized_keys line.
func fingerprint(t *testing.T, line string) string {
	t.Helper()
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return ssh.FingerprintSHA256(pk)
}
