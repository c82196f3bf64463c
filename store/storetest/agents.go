package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

// Activation ids in SSM's 8-4-4-4-12 shape, and host keys as an agent
// reports them.
const (
	actA = "0a000000-0000-4000-8000-000000000001"
	actB = "0b000000-0000-4000-8000-000000000002"
	actC = "0c000000-0000-4000-8000-000000000003"

	hostKeyEd25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	hostKeyECDSA   = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg="
)

// newActivation returns an activation that expires an hour after stamp(0)
// and has registered nothing yet.
func newActivation(id string, limit int, created time.Time, tags ...postern.Tag) *postern.Activation {
	hash := sha256.Sum256([]byte("code for " + id))
	return &postern.Activation{
		ID: id, CodeHash: hash[:], Description: "hosts of " + id, DefaultInstanceName: "host-" + id[:8],
		RegistrationLimit: limit, ExpiresAt: stamp(3600), VPCID: vpcA, Tags: tags,
		CreatedAt: created, CreatedBy: "arn:aws:iam::123456789012:user/alice",
	}
}

func createActivation(t *testing.T, s postern.Store, a *postern.Activation) *postern.Activation {
	t.Helper()
	ok(t, s.CreateActivation(t.Context(), a), "CreateActivation "+a.ID)
	return a
}

// agentInstance returns an instance as an agent registers it through
// activation act, with every field set.
func agentInstance(id, act string, tags ...postern.Tag) *postern.Instance {
	return &postern.Instance{
		ID: id, State: postern.InstanceRunning, Hostname: "host-" + id, Platform: "Linux/UNIX",
		PrivateIP: "10.0.1.17", PublicIP: "203.0.113.9", VPCID: vpcA, SubnetID: subnetA,
		Tags: tags, LaunchTime: stamp(10), LastSeen: stamp(11),
		AgentKey: []byte("ed25519 public key of " + id), ActivationID: act,
		OS: "Debian GNU/Linux 12 (bookworm)", HostKeys: []string{hostKeyEd25519, hostKeyECDSA}, SSHPort: 2222,
	}
}

func sameActivation(t *testing.T, got, want *postern.Activation) {
	t.Helper()
	type fields struct {
		ID, Description, DefaultInstanceName string
		RegistrationLimit, RegistrationCount int
		VPCID, CreatedBy                     string
	}
	g := fields{got.ID, got.Description, got.DefaultInstanceName, got.RegistrationLimit, got.RegistrationCount, got.VPCID, got.CreatedBy}
	w := fields{want.ID, want.Description, want.DefaultInstanceName, want.RegistrationLimit, want.RegistrationCount, want.VPCID, want.CreatedBy}
	if g != w {
		t.Errorf("activation = %+v, want %+v", g, w)
	}
	if !bytes.Equal(got.CodeHash, want.CodeHash) {
		t.Errorf("activation %s CodeHash = %x, want %x", want.ID, got.CodeHash, want.CodeHash)
	}
	sameTime(t, "activation "+want.ID+" ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	sameTime(t, "activation "+want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTags(t, "activation "+want.ID, got.Tags, want.Tags)
}

func activationIDs(as []postern.Activation) []string {
	return ids(as, func(a *postern.Activation) string { return a.ID })
}

// registrations returns the activation's RegistrationCount.
func registrations(t *testing.T, s postern.Store, id string) int {
	t.Helper()
	a, err := s.GetActivation(t.Context(), id)
	ok(t, err, "GetActivation "+id)
	return a.RegistrationCount
}

// wantNoInstance fails the test unless id names no instance.
func wantNoInstance(t *testing.T, s postern.Store, id, what string) {
	t.Helper()
	_, err := s.GetInstance(t.Context(), id)
	wantKind(t, err, postern.KindNotFound, "GetInstance after "+what, id)
}

func testActivations(t *testing.T, s postern.Store) {
	ctx := t.Context()
	as, err := s.ListActivations(ctx)
	ok(t, err, "ListActivations of an empty store")
	if len(as) != 0 {
		t.Errorf("ListActivations of an empty store = %v", activationIDs(as))
	}
	_, err = s.GetActivation(ctx, actA)
	wantKind(t, err, postern.KindNotFound, "GetActivation of a missing activation", actA)
	wantKind(t, s.DeleteActivation(ctx, actA), postern.KindNotFound, "DeleteActivation of a missing activation", actA)

	// Created in an order that is not the order of the ids.
	b := createActivation(t, s, newActivation(actB, 10, stamp(1), tags("Name", "web", "env", "")...))
	a := newActivation(actA, 1, stamp(2))
	a.Description, a.DefaultInstanceName, a.VPCID = "", "", ""
	a.RegistrationCount = 1 // a store keeps the count it is given
	createActivation(t, s, a)
	c := newActivation(actC, 5, stamp(3), tags("team", "infra")...)
	c.ExpiresAt = time.Time{} // zero stays zero
	createActivation(t, s, c)

	for _, want := range []*postern.Activation{a, b, c} {
		got, err := s.GetActivation(ctx, want.ID)
		ok(t, err, "GetActivation")
		sameActivation(t, got, want)
	}
	got, err := s.GetActivation(ctx, actC)
	ok(t, err, "GetActivation")
	if !got.ExpiresAt.IsZero() {
		t.Errorf("zero ExpiresAt came back as %s", got.ExpiresAt)
	}

	dup := newActivation(actB, 99, stamp(50), tags("other", "tag")...)
	wantKind(t, s.CreateActivation(ctx, dup), postern.KindExists, "CreateActivation with a taken id", actB)
	got, err = s.GetActivation(ctx, actB)
	ok(t, err, "GetActivation after a duplicate create")
	sameActivation(t, got, b)

	as, err = s.ListActivations(ctx)
	ok(t, err, "ListActivations")
	if got := activationIDs(as); !slices.Equal(got, []string{actB, actA, actC}) {
		t.Fatalf("ListActivations = %v, want b, a, c (oldest first)", got)
	}
	sameActivation(t, &as[0], b)
	sameActivation(t, &as[1], a)
	sameActivation(t, &as[2], c)

	ok(t, s.DeleteActivation(ctx, actB), "DeleteActivation")
	_, err = s.GetActivation(ctx, actB)
	wantKind(t, err, postern.KindNotFound, "GetActivation of a deleted activation", actB)
	wantKind(t, s.DeleteActivation(ctx, actB), postern.KindNotFound, "DeleteActivation of a deleted activation", actB)
	as, err = s.ListActivations(ctx)
	ok(t, err, "ListActivations after a delete")
	if got := activationIDs(as); !slices.Equal(got, []string{actA, actC}) {
		t.Errorf("ListActivations after deleting b = %v, want a, c", got)
	}
	// The id is free again, and the new activation starts bare.
	fresh := createActivation(t, s, newActivation(actB, 3, stamp(4)))
	got, err = s.GetActivation(ctx, actB)
	ok(t, err, "GetActivation of a re-created activation")
	sameActivation(t, got, fresh)
}

func testRegisterInstance(t *testing.T, s postern.Store) {
	ctx := t.Context()
	now := stamp(60)
	createActivation(t, s, newActivation(actA, 2, stamp(0), tags("env", "prod")...))

	// Success stores the instance, every field of it, and counts it.
	a := agentInstance(instA, actA, tags("Name", "web-1", "env", "prod")...)
	ok(t, s.RegisterInstance(ctx, actA, now, a), "RegisterInstance")
	got, err := s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance of a registered instance")
	sameInstance(t, got, a)
	is, err := s.ListInstances(ctx, nil)
	ok(t, err, "ListInstances")
	if len(is) != 1 {
		t.Fatalf("ListInstances after one registration = %v", instanceIDs(is))
	}
	sameInstance(t, &is[0], a)
	if n := registrations(t, s, actA); n != 1 {
		t.Errorf("RegistrationCount after one registration = %d, want 1", n)
	}

	// An unknown activation stores nothing.
	err = s.RegisterInstance(ctx, actB, now, agentInstance(instB, actB))
	wantKind(t, err, postern.KindNotFound, "RegisterInstance with an unknown activation", actB)
	wantNoInstance(t, s, instB, "a registration with an unknown activation")

	// A taken instance id is refused, and neither the instance nor the
	// count changes.
	err = s.RegisterInstance(ctx, actA, now, agentInstance(instA, actA, tags("Name", "impostor")...))
	wantKind(t, err, postern.KindExists, "RegisterInstance with a taken instance id", instA)
	got, err = s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance after a duplicate registration")
	sameInstance(t, got, a)
	if n := registrations(t, s, actA); n != 1 {
		t.Errorf("RegistrationCount after a duplicate registration = %d, want 1", n)
	}

	// The last registration the limit allows, then none.
	b := agentInstance(instB, actA)
	ok(t, s.RegisterInstance(ctx, actA, now, b), "RegisterInstance up to the limit")
	err = s.RegisterInstance(ctx, actA, now, agentInstance(instC, actA))
	wantKind(t, err, postern.KindLimit, "RegisterInstance past the limit", actA)
	wantNoInstance(t, s, instC, "a registration past the limit")
	if n := registrations(t, s, actA); n != 2 {
		t.Errorf("RegistrationCount after a refused registration = %d, want 2", n)
	}
	got, err = s.GetInstance(ctx, instB)
	ok(t, err, "GetInstance")
	sameInstance(t, got, b)

	// Deleting the activation leaves the instances it registered.
	ok(t, s.DeleteActivation(ctx, actA), "DeleteActivation")
	got, err = s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance after its activation was deleted")
	sameInstance(t, got, a)
}

func testRegisterInstanceExpired(t *testing.T, s postern.Store) {
	ctx := t.Context()
	act := createActivation(t, s, newActivation(actA, 10, stamp(0)))

	// An activation is good until just before ExpiresAt.
	ok(t, s.RegisterInstance(ctx, actA, act.ExpiresAt.Add(-time.Nanosecond), agentInstance(instA, actA)),
		"RegisterInstance a nanosecond before expiry")
	for _, now := range []time.Time{act.ExpiresAt, act.ExpiresAt.UTC(), act.ExpiresAt.Add(time.Hour)} {
		err := s.RegisterInstance(ctx, actA, now, agentInstance(instB, actA))
		wantKind(t, err, postern.KindConflict, "RegisterInstance at "+now.Format(time.RFC3339Nano)+" with an activation expiring at "+
			act.ExpiresAt.Format(time.RFC3339Nano), actA)
	}
	wantNoInstance(t, s, instB, "a registration with an expired activation")
	if n := registrations(t, s, actA); n != 1 {
		t.Errorf("RegistrationCount after refused registrations = %d, want 1", n)
	}
}

func testRegisterInstanceConcurrent(t *testing.T, s postern.Store) {
	ctx := t.Context()
	const n, limit = 20, 5
	createActivation(t, s, newActivation(actA, limit, stamp(0)))
	errs := make(chan error, n)
	for i := range n {
		go func() {
			// i- and 17 hex digits.
			id := fmt.Sprintf("i-0d%015x", i)
			errs <- s.RegisterInstance(ctx, actA, stamp(60), agentInstance(id, actA))
		}()
	}
	won := 0
	for range n {
		err := <-errs
		if err == nil {
			won++
			continue
		}
		wantKind(t, err, postern.KindLimit, "concurrent RegisterInstance", actA)
	}
	if won != limit {
		t.Errorf("%d of %d concurrent registrations succeeded against a limit of %d", won, n, limit)
	}
	if got := registrations(t, s, actA); got != limit {
		t.Errorf("RegistrationCount after concurrent registrations = %d, want %d", got, limit)
	}
	is, err := s.ListInstances(ctx, nil)
	ok(t, err, "ListInstances")
	if len(is) != limit {
		t.Errorf("%d instances stored after concurrent registrations, want %d: %v", len(is), limit, instanceIDs(is))
	}
}

func testUpdateInstanceFacts(t *testing.T, s postern.Store) {
	ctx := t.Context()
	a := agentInstance(instA, actA, tags("Name", "web-1", "team", "infra")...)
	ok(t, s.PutInstance(ctx, a), "PutInstance")
	got, err := s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance")
	sameInstance(t, got, a)

	f := postern.InstanceFacts{
		State: postern.InstancePending, Hostname: "web-1.internal", Platform: "Windows",
		OS: "Ubuntu 24.04.1 LTS", PrivateIP: "10.0.2.30", PublicIP: "", VPCID: vpcB, SubnetID: subnetB,
		HostKeys: []string{hostKeyECDSA}, SSHPort: 22, LastSeen: stamp(7200),
	}
	ok(t, s.UpdateInstanceFacts(ctx, instA, f), "UpdateInstanceFacts")
	want := *a
	want.State, want.Hostname, want.Platform, want.OS = f.State, f.Hostname, f.Platform, f.OS
	want.PrivateIP, want.PublicIP, want.VPCID, want.SubnetID = f.PrivateIP, f.PublicIP, f.VPCID, f.SubnetID
	want.HostKeys, want.SSHPort, want.LastSeen = f.HostKeys, f.SSHPort, f.LastSeen
	// Tags, launch time and the agent's identity stay as they were.
	got, err = s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance after UpdateInstanceFacts")
	sameInstance(t, got, &want)

	// An agent that reports no host keys has none.
	f.HostKeys = nil
	ok(t, s.UpdateInstanceFacts(ctx, instA, f), "UpdateInstanceFacts without host keys")
	got, err = s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance")
	if len(got.HostKeys) != 0 {
		t.Errorf("host keys after a report of none = %q", got.HostKeys)
	}

	err = s.UpdateInstanceFacts(ctx, instB, f)
	wantKind(t, err, postern.KindNotFound, "UpdateInstanceFacts of a missing instance", instB)
	wantNoInstance(t, s, instB, "UpdateInstanceFacts of a missing instance")
}

func testSetInstanceState(t *testing.T, s postern.Store) {
	ctx := t.Context()
	a := agentInstance(instA, actA, tags("Name", "web-1")...)
	ok(t, s.PutInstance(ctx, a), "PutInstance")

	// A zero lastSeen keeps the one stored.
	ok(t, s.SetInstanceState(ctx, instA, postern.InstanceStopped, time.Time{}), "SetInstanceState without lastSeen")
	want := *a
	want.State = postern.InstanceStopped
	got, err := s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance")
	sameInstance(t, got, &want)

	ok(t, s.SetInstanceState(ctx, instA, postern.InstanceRunning, stamp(900)), "SetInstanceState with lastSeen")
	want.State, want.LastSeen = postern.InstanceRunning, stamp(900)
	got, err = s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance")
	sameInstance(t, got, &want)

	err = s.SetInstanceState(ctx, instB, postern.InstanceRunning, stamp(900))
	wantKind(t, err, postern.KindNotFound, "SetInstanceState of a missing instance", instB)
	wantNoInstance(t, s, instB, "SetInstanceState of a missing instance")
}

func testStopSilentInstances(t *testing.T, s postern.Store) {
	ctx := t.Context()
	cutoff := stamp(1000)
	put := func(id, state string, lastSeen time.Time) *postern.Instance {
		t.Helper()
		i := agentInstance(id, actA)
		i.State, i.LastSeen = state, lastSeen
		ok(t, s.PutInstance(ctx, i), "PutInstance "+id)
		return i
	}
	id := func(n int) string { return fmt.Sprintf("i-0e%015x", n) }
	silentRunning := put(id(1), postern.InstanceRunning, cutoff.Add(-time.Hour))
	silentPending := put(id(2), postern.InstancePending, cutoff.Add(-time.Nanosecond))
	recent := put(id(3), postern.InstanceRunning, cutoff.Add(time.Second))
	atCutoff := put(id(4), postern.InstanceRunning, cutoff.UTC()) // not before it
	terminated := put(id(5), postern.InstanceTerminated, cutoff.Add(-time.Hour))
	stopped := put(id(6), postern.InstanceStopped, cutoff.Add(-time.Hour))

	stoppedIDs, err := s.StopSilentInstances(ctx, cutoff)
	ok(t, err, "StopSilentInstances")
	slices.Sort(stoppedIDs)
	if want := []string{silentRunning.ID, silentPending.ID}; !slices.Equal(stoppedIDs, want) {
		t.Errorf("StopSilentInstances = %v, want %v", stoppedIDs, want)
	}
	// Only the state of the silent ones changed.
	silentRunning.State, silentPending.State = postern.InstanceStopped, postern.InstanceStopped
	for _, want := range []*postern.Instance{silentRunning, silentPending, recent, atCutoff, terminated, stopped} {
		got, err := s.GetInstance(ctx, want.ID)
		ok(t, err, "GetInstance")
		sameInstance(t, got, want)
	}

	// Once stopped they are not stopped again.
	stoppedIDs, err = s.StopSilentInstances(ctx, cutoff)
	ok(t, err, "StopSilentInstances again")
	if len(stoppedIDs) != 0 {
		t.Errorf("StopSilentInstances again = %v, want none", stoppedIDs)
	}
}

// testInstanceReadsFollowWrites reads an instance before each kind of write
// to it and again after: a store that caches reads must show every write
// of its own at once, and never hand out a shared copy.
func testInstanceReadsFollowWrites(t *testing.T, s postern.Store) {
	ctx := t.Context()
	i := agentInstance(instA, actA)
	i.State, i.LastSeen = postern.InstanceRunning, stamp(100)
	i.Tags = tags("env", "prod")
	ok(t, s.PutInstance(ctx, i), "PutInstance")
	read := func(what string) *postern.Instance {
		t.Helper()
		got, err := s.GetInstance(ctx, instA)
		ok(t, err, "GetInstance "+what)
		return got
	}

	// A caller changing what it got changes nothing stored.
	got := read("before a caller edits its copy")
	got.Tags[0].Value, got.State = "edited", postern.InstanceStopped
	got.HostKeys = append(got.HostKeys[:0], "edited")
	sameInstance(t, read("after a caller edited its copy"), i)

	read("before CreateTags")
	ok(t, s.CreateTags(ctx, []string{instA}, tags("env", "dev")), "CreateTags")
	if got := read("after CreateTags"); postern.TagValue(got.Tags, "env") != "dev" {
		t.Errorf("after CreateTags env=dev, GetInstance has tags %v", got.Tags)
	}
	read("before DeleteTags")
	ok(t, s.DeleteTags(ctx, []string{instA}, []postern.TagSelector{{Key: "env"}}), "DeleteTags")
	if got := read("after DeleteTags"); len(got.Tags) != 0 {
		t.Errorf("after DeleteTags, GetInstance has tags %v", got.Tags)
	}
	read("before UpdateInstanceFacts")
	f := postern.InstanceFacts{State: postern.InstanceRunning, Hostname: "facts-host", PrivateIP: "10.0.1.7",
		VPCID: i.VPCID, SubnetID: i.SubnetID, HostKeys: []string{hostKeyEd25519}, SSHPort: 22, LastSeen: stamp(200)}
	ok(t, s.UpdateInstanceFacts(ctx, instA, f), "UpdateInstanceFacts")
	if got := read("after UpdateInstanceFacts"); got.Hostname != "facts-host" || got.PrivateIP != "10.0.1.7" {
		t.Errorf("after UpdateInstanceFacts, GetInstance has hostname %q, private IP %q", got.Hostname, got.PrivateIP)
	}
	read("before StopSilentInstances")
	stopped, err := s.StopSilentInstances(ctx, stamp(300))
	ok(t, err, "StopSilentInstances")
	if !slices.Equal(stopped, []string{instA}) {
		t.Fatalf("StopSilentInstances = %v, want [%s]", stopped, instA)
	}
	if got := read("after StopSilentInstances"); got.State != postern.InstanceStopped {
		t.Errorf("after StopSilentInstances, GetInstance has state %q", got.State)
	}
	// A write to one instance shows at once, and leaves the other as it is.
	b := agentInstance(instB, actA)
	b.State, b.LastSeen = postern.InstanceRunning, stamp(400)
	ok(t, s.PutInstance(ctx, b), "PutInstance of a second instance")
	before := read("before a heartbeat of the second instance")
	if _, err := s.GetInstance(ctx, instB); err != nil {
		t.Fatal(err)
	}
	ok(t, s.SetInstanceState(ctx, instB, postern.InstanceRunning, stamp(500)), "SetInstanceState of the second instance")
	if got, err := s.GetInstance(ctx, instB); err != nil || !got.LastSeen.Equal(stamp(500)) {
		t.Errorf("after a heartbeat, the second instance reads %v, %v; want last seen %v", got, err, stamp(500))
	}
	sameInstance(t, read("after a heartbeat of the second instance"), before)

	read("before SetInstanceState")
	ok(t, s.SetInstanceState(ctx, instA, postern.InstanceTerminated, time.Time{}), "SetInstanceState")
	if got := read("after SetInstanceState"); got.State != postern.InstanceTerminated {
		t.Errorf("after SetInstanceState terminated, GetInstance has state %q", got.State)
	}
}
