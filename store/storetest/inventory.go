package storetest

import (
	"bytes"
	"slices"
	"testing"

	"github.com/postern-dev/postern"
)

// Ids in the shapes EC2 uses; the stores only rely on the prefixes.
const (
	vpcA    = "vpc-0a000000000000001"
	vpcB    = "vpc-0b000000000000002"
	vpcC    = "vpc-0c000000000000003"
	subnetA = "subnet-0a00000000000001"
	subnetB = "subnet-0b00000000000002"
	instA   = "i-0a000000000000001"
	instB   = "i-0b000000000000002"
	instC   = "i-0c000000000000003"
)

func createVPC(t *testing.T, s postern.Store, id, cidr string, tags ...postern.Tag) *postern.VPC {
	t.Helper()
	v := &postern.VPC{ID: id, CIDR: cidr, State: "available", Tags: tags, CreatedAt: stamp(len(cidr))}
	ok(t, s.CreateVPC(t.Context(), v), "CreateVPC "+id)
	return v
}

func createSubnet(t *testing.T, s postern.Store, id, vpc, cidr string, tags ...postern.Tag) *postern.Subnet {
	t.Helper()
	sn := &postern.Subnet{ID: id, VPCID: vpc, CIDR: cidr, AvailabilityZone: "eu-west-1a", State: "available", Tags: tags, CreatedAt: stamp(len(cidr))}
	ok(t, s.CreateSubnet(t.Context(), sn), "CreateSubnet "+id)
	return sn
}

func putInstance(t *testing.T, s postern.Store, id, subnet, state string, tags ...postern.Tag) *postern.Instance {
	t.Helper()
	i := &postern.Instance{
		ID: id, State: state, Hostname: "host-" + id, Platform: "Linux/UNIX",
		PrivateIP: "10.0.1.17", PublicIP: "203.0.113.9", VPCID: vpcA, SubnetID: subnet,
		Tags: tags, LaunchTime: stamp(1), LastSeen: stamp(2),
	}
	ok(t, s.PutInstance(t.Context(), i), "PutInstance "+id)
	return i
}

func sameVPC(t *testing.T, got, want *postern.VPC) {
	t.Helper()
	if got.ID != want.ID || got.CIDR != want.CIDR || got.State != want.State {
		t.Errorf("VPC = %+v, want %+v", got, want)
	}
	sameTime(t, "VPC "+want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTags(t, "VPC "+want.ID, got.Tags, want.Tags)
}

func sameSubnet(t *testing.T, got, want *postern.Subnet) {
	t.Helper()
	if got.ID != want.ID || got.VPCID != want.VPCID || got.CIDR != want.CIDR ||
		got.AvailabilityZone != want.AvailabilityZone || got.State != want.State {
		t.Errorf("subnet = %+v, want %+v", got, want)
	}
	sameTime(t, "subnet "+want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTags(t, "subnet "+want.ID, got.Tags, want.Tags)
}

func sameInstance(t *testing.T, got, want *postern.Instance) {
	t.Helper()
	type fields struct{ ID, State, Hostname, Platform, PrivateIP, PublicIP, VPCID, SubnetID string }
	g := fields{got.ID, got.State, got.Hostname, got.Platform, got.PrivateIP, got.PublicIP, got.VPCID, got.SubnetID}
	w := fields{want.ID, want.State, want.Hostname, want.Platform, want.PrivateIP, want.PublicIP, want.VPCID, want.SubnetID}
	if g != w {
		t.Errorf("instance = %+v, want %+v", g, w)
	}
	// What the agent registers and reports. Nil and empty are the same.
	if !bytes.Equal(got.AgentKey, want.AgentKey) || got.ActivationID != want.ActivationID || got.OS != want.OS ||
		!slices.Equal(got.HostKeys, want.HostKeys) || got.SSHPort != want.SSHPort {
		t.Errorf("instance %s agent fields = key %x, activation %q, OS %q, host keys %q, SSH port %d; want %x, %q, %q, %q, %d",
			want.ID, got.AgentKey, got.ActivationID, got.OS, got.HostKeys, got.SSHPort,
			want.AgentKey, want.ActivationID, want.OS, want.HostKeys, want.SSHPort)
	}
	sameTime(t, "instance "+want.ID+" LaunchTime", got.LaunchTime, want.LaunchTime)
	sameTime(t, "instance "+want.ID+" LastSeen", got.LastSeen, want.LastSeen)
	sameTags(t, "instance "+want.ID, got.Tags, want.Tags)
}

func ids[T any](items []T, id func(*T) string) []string {
	var out []string
	for i := range items {
		out = append(out, id(&items[i]))
	}
	return out
}

func vpcIDs(vs []postern.VPC) []string { return ids(vs, func(v *postern.VPC) string { return v.ID }) }
func subnetIDs(ss []postern.Subnet) []string {
	return ids(ss, func(s *postern.Subnet) string { return s.ID })
}
func instanceIDs(is []postern.Instance) []string {
	return ids(is, func(i *postern.Instance) string { return i.ID })
}

func testVPCs(t *testing.T, s postern.Store) {
	ctx := t.Context()
	vs, err := s.ListVPCs(ctx, nil)
	ok(t, err, "ListVPCs of an empty store")
	if len(vs) != 0 {
		t.Errorf("ListVPCs of an empty store = %v", vpcIDs(vs))
	}
	_, err = s.GetVPC(ctx, vpcA)
	wantKind(t, err, postern.KindNotFound, "GetVPC of a missing VPC", vpcA)

	b := createVPC(t, s, vpcB, "10.1.0.0/16")
	a := createVPC(t, s, vpcA, "10.0.0.0/16", postern.Tag{Key: "Name", Value: "prod"}, postern.Tag{Key: "env", Value: ""})
	c := createVPC(t, s, vpcC, "fd00:1::/56", postern.Tag{Key: "Name", Value: "v6"})

	got, err := s.GetVPC(ctx, vpcA)
	ok(t, err, "GetVPC")
	sameVPC(t, got, a)

	wantKind(t, s.CreateVPC(ctx, &postern.VPC{ID: vpcA, CIDR: "10.9.0.0/16", State: "available", CreatedAt: stamp(0)}),
		postern.KindExists, "CreateVPC with a taken id", vpcA)
	got, err = s.GetVPC(ctx, vpcA)
	ok(t, err, "GetVPC after a duplicate create")
	sameVPC(t, got, a)

	vs, err = s.ListVPCs(ctx, nil)
	ok(t, err, "ListVPCs")
	if got := vpcIDs(vs); !slices.Equal(got, []string{vpcA, vpcB, vpcC}) {
		t.Fatalf("ListVPCs = %v, want all three by id", got)
	}
	sameVPC(t, &vs[0], a)
	sameVPC(t, &vs[1], b)
	sameVPC(t, &vs[2], c)

	vs, err = s.ListVPCs(ctx, []string{vpcC, vpcA})
	ok(t, err, "ListVPCs with ids")
	if got := vpcIDs(vs); !slices.Equal(got, []string{vpcA, vpcC}) {
		t.Errorf("ListVPCs(c, a) = %v, want a, c", got)
	}
	vs, err = s.ListVPCs(ctx, []string{vpcB, vpcB})
	ok(t, err, "ListVPCs with a repeated id")
	if got := vpcIDs(vs); !slices.Equal(got, []string{vpcB}) {
		t.Errorf("ListVPCs(b, b) = %v, want b once", got)
	}
	_, err = s.ListVPCs(ctx, []string{vpcA, "vpc-0ffffffffffffffff"})
	wantKind(t, err, postern.KindNotFound, "ListVPCs with an unknown id", "vpc-0ffffffffffffffff")

	ok(t, s.DeleteVPC(ctx, vpcA), "DeleteVPC")
	_, err = s.GetVPC(ctx, vpcA)
	wantKind(t, err, postern.KindNotFound, "GetVPC of a deleted VPC", vpcA)
	wantKind(t, s.DeleteVPC(ctx, vpcA), postern.KindNotFound, "DeleteVPC of a deleted VPC", vpcA)
	// Its tags went with it: a new VPC with the same id starts bare.
	fresh := createVPC(t, s, vpcA, "10.0.0.0/16")
	got, err = s.GetVPC(ctx, vpcA)
	ok(t, err, "GetVPC")
	sameVPC(t, got, fresh)
}

func testSubnets(t *testing.T, s postern.Store) {
	ctx := t.Context()
	err := s.CreateSubnet(ctx, &postern.Subnet{ID: subnetA, VPCID: vpcA, CIDR: "10.0.1.0/24", State: "available", CreatedAt: stamp(0)})
	wantKind(t, err, postern.KindNotFound, "CreateSubnet in a missing VPC", vpcA)
	_, err = s.GetSubnet(ctx, subnetA)
	wantKind(t, err, postern.KindNotFound, "GetSubnet of a subnet whose create failed", subnetA)

	createVPC(t, s, vpcA, "10.0.0.0/16")
	b := createSubnet(t, s, subnetB, vpcA, "10.0.2.0/24")
	a := createSubnet(t, s, subnetA, vpcA, "10.0.1.0/24", postern.Tag{Key: "Name", Value: "private"})

	got, err := s.GetSubnet(ctx, subnetA)
	ok(t, err, "GetSubnet")
	sameSubnet(t, got, a)
	wantKind(t, s.CreateSubnet(ctx, &postern.Subnet{ID: subnetA, VPCID: vpcA, CIDR: "10.0.9.0/24", State: "available", CreatedAt: stamp(0)}),
		postern.KindExists, "CreateSubnet with a taken id", subnetA)

	ss, err := s.ListSubnets(ctx, nil)
	ok(t, err, "ListSubnets")
	if got := subnetIDs(ss); !slices.Equal(got, []string{subnetA, subnetB}) {
		t.Fatalf("ListSubnets = %v, want a, b", got)
	}
	sameSubnet(t, &ss[0], a)
	sameSubnet(t, &ss[1], b)
	ss, err = s.ListSubnets(ctx, []string{subnetB})
	ok(t, err, "ListSubnets with ids")
	if got := subnetIDs(ss); !slices.Equal(got, []string{subnetB}) {
		t.Errorf("ListSubnets(b) = %v", got)
	}
	_, err = s.ListSubnets(ctx, []string{"subnet-0fffffffffffffff", subnetA})
	wantKind(t, err, postern.KindNotFound, "ListSubnets with an unknown id", "subnet-0fffffffffffffff")

	wantKind(t, s.DeleteVPC(ctx, vpcA), postern.KindConflict, "DeleteVPC with subnets", vpcA)
	if _, err := s.GetVPC(ctx, vpcA); err != nil {
		t.Errorf("a refused DeleteVPC deleted the VPC: %v", err)
	}
	ok(t, s.DeleteSubnet(ctx, subnetA), "DeleteSubnet")
	_, err = s.GetSubnet(ctx, subnetA)
	wantKind(t, err, postern.KindNotFound, "GetSubnet of a deleted subnet", subnetA)
	wantKind(t, s.DeleteSubnet(ctx, subnetA), postern.KindNotFound, "DeleteSubnet of a deleted subnet", subnetA)
	wantKind(t, s.DeleteVPC(ctx, vpcA), postern.KindConflict, "DeleteVPC with one subnet left", vpcA)
	ok(t, s.DeleteSubnet(ctx, subnetB), "DeleteSubnet")
	ok(t, s.DeleteVPC(ctx, vpcA), "DeleteVPC once its subnets are gone")
}

func testDeleteSubnetConflicts(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createVPC(t, s, vpcA, "10.0.0.0/16")
	createSubnet(t, s, subnetA, vpcA, "10.0.1.0/24")
	createSubnet(t, s, subnetB, vpcA, "10.0.2.0/24")
	putInstance(t, s, instA, subnetA, postern.InstanceRunning)
	putInstance(t, s, instB, subnetA, postern.InstanceTerminated)
	putInstance(t, s, instC, subnetB, postern.InstanceStopped)

	wantKind(t, s.DeleteSubnet(ctx, subnetA), postern.KindConflict, "DeleteSubnet with a running instance", subnetA)
	wantKind(t, s.DeleteSubnet(ctx, subnetB), postern.KindConflict, "DeleteSubnet with a stopped instance", subnetB)
	if _, err := s.GetSubnet(ctx, subnetA); err != nil {
		t.Errorf("a refused DeleteSubnet deleted the subnet: %v", err)
	}
	// Terminated instances do not hold a subnet.
	i := putInstance(t, s, instA, subnetA, postern.InstanceTerminated)
	ok(t, s.DeleteSubnet(ctx, subnetA), "DeleteSubnet with only terminated instances")
	// The instances themselves stay.
	got, err := s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance after its subnet was deleted")
	sameInstance(t, got, i)
}

func testInstances(t *testing.T, s postern.Store) {
	ctx := t.Context()
	is, err := s.ListInstances(ctx, nil)
	ok(t, err, "ListInstances of an empty store")
	if len(is) != 0 {
		t.Errorf("ListInstances of an empty store = %v", instanceIDs(is))
	}
	_, err = s.GetInstance(ctx, instA)
	wantKind(t, err, postern.KindNotFound, "GetInstance of a missing instance", instA)

	b := putInstance(t, s, instB, subnetA, postern.InstancePending)
	a := putInstance(t, s, instA, subnetA, postern.InstanceRunning, postern.Tag{Key: "Name", Value: "web-1"}, postern.Tag{Key: "team", Value: "infra"})
	got, err := s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance")
	sameInstance(t, got, a)
	if got.Name() != "web-1" {
		t.Errorf("Name() = %q", got.Name())
	}

	// PutInstance replaces every field, tags included.
	a2 := *a
	a2.State, a2.PrivateIP, a2.PublicIP, a2.Hostname = postern.InstanceStopped, "10.0.1.99", "", "renamed"
	a2.LastSeen = stamp(3600)
	a2.Tags = []postern.Tag{{Key: "Name", Value: "web-2"}}
	a2.AgentKey, a2.ActivationID, a2.OS = []byte{0xed, 0, 0x19}, actA, "Debian GNU/Linux 12 (bookworm)"
	a2.HostKeys, a2.SSHPort = []string{hostKeyEd25519}, 2222
	ok(t, s.PutInstance(ctx, &a2), "PutInstance replacing an instance")
	got, err = s.GetInstance(ctx, instA)
	ok(t, err, "GetInstance")
	sameInstance(t, got, &a2)

	// An instance never seen has a zero LastSeen, and keeps it.
	c := &postern.Instance{ID: instC, State: postern.InstancePending, LaunchTime: stamp(5)}
	ok(t, s.PutInstance(ctx, c), "PutInstance with zero fields")
	got, err = s.GetInstance(ctx, instC)
	ok(t, err, "GetInstance")
	sameInstance(t, got, c)
	if !got.LastSeen.IsZero() {
		t.Errorf("zero LastSeen came back as %s", got.LastSeen)
	}

	is, err = s.ListInstances(ctx, nil)
	ok(t, err, "ListInstances")
	if got := instanceIDs(is); !slices.Equal(got, []string{instA, instB, instC}) {
		t.Fatalf("ListInstances = %v, want a, b, c", got)
	}
	sameInstance(t, &is[0], &a2)
	sameInstance(t, &is[1], b)
	sameInstance(t, &is[2], c)
	is, err = s.ListInstances(ctx, []string{instC, instB})
	ok(t, err, "ListInstances with ids")
	if got := instanceIDs(is); !slices.Equal(got, []string{instB, instC}) {
		t.Errorf("ListInstances(c, b) = %v, want b, c", got)
	}
	_, err = s.ListInstances(ctx, []string{instA, "i-0fffffffffffffff0"})
	wantKind(t, err, postern.KindNotFound, "ListInstances with an unknown id", "i-0fffffffffffffff0")
}

// tagsOf returns the current tags of a vpc-, subnet-, eice- or i- resource.
func tagsOf(t *testing.T, s postern.Store, id string) []postern.Tag {
	t.Helper()
	ctx := t.Context()
	switch {
	case len(id) > 4 && id[:4] == "vpc-":
		v, err := s.GetVPC(ctx, id)
		ok(t, err, "GetVPC")
		return v.Tags
	case len(id) > 7 && id[:7] == "subnet-":
		sn, err := s.GetSubnet(ctx, id)
		ok(t, err, "GetSubnet")
		return sn.Tags
	case len(id) > 5 && id[:5] == "eice-":
		e, err := s.GetEndpoint(ctx, id)
		ok(t, err, "GetEndpoint")
		return e.Tags
	default:
		i, err := s.GetInstance(ctx, id)
		ok(t, err, "GetInstance")
		return i.Tags
	}
}

func tags(kv ...string) []postern.Tag {
	var out []postern.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, postern.Tag{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func testTags(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createVPC(t, s, vpcA, "10.0.0.0/16", tags("Name", "prod")...)
	createSubnet(t, s, subnetA, vpcA, "10.0.1.0/24")
	putInstance(t, s, instA, subnetA, postern.InstanceRunning, tags("Name", "web-1")...)
	all := []string{vpcA, subnetA, instA}

	ok(t, s.CreateTags(ctx, all, tags("env", "prod", "team", "")), "CreateTags")
	sameTags(t, vpcA, tagsOf(t, s, vpcA), tags("Name", "prod", "env", "prod", "team", ""))
	sameTags(t, subnetA, tagsOf(t, s, subnetA), tags("env", "prod", "team", ""))
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-1", "env", "prod", "team", ""))

	// Overwrite a value on one resource only.
	ok(t, s.CreateTags(ctx, []string{instA}, tags("Name", "web-2", "env", "stage")), "CreateTags overwriting")
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-2", "env", "stage", "team", ""))
	sameTags(t, vpcA, tagsOf(t, s, vpcA), tags("Name", "prod", "env", "prod", "team", ""))

	// Tags are listed with the resources too.
	is, err := s.ListInstances(ctx, nil)
	ok(t, err, "ListInstances")
	if len(is) != 1 {
		t.Fatalf("ListInstances returned %d instances", len(is))
	}
	sameTags(t, "listed "+instA, is[0].Tags, tags("Name", "web-2", "env", "stage", "team", ""))

	// A nil Value deletes the key whatever its value.
	ok(t, s.DeleteTags(ctx, all, []postern.TagSelector{{Key: "env"}}), "DeleteTags by key")
	sameTags(t, vpcA, tagsOf(t, s, vpcA), tags("Name", "prod", "team", ""))
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-2", "team", ""))

	// A Value deletes it only where it matches.
	ok(t, s.DeleteTags(ctx, []string{vpcA, instA}, []postern.TagSelector{{Key: "Name", Value: strPtr("prod")}}), "DeleteTags by key and value")
	sameTags(t, vpcA, tagsOf(t, s, vpcA), tags("team", ""))
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-2", "team", ""))

	// The empty Value matches only the empty value.
	ok(t, s.DeleteTags(ctx, all, []postern.TagSelector{{Key: "Name", Value: strPtr("")}, {Key: "team", Value: strPtr("")}}), "DeleteTags of empty values")
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-2"))
	sameTags(t, subnetA, tagsOf(t, s, subnetA), nil)

	// Deleting a tag that is not there is not an error.
	ok(t, s.DeleteTags(ctx, all, []postern.TagSelector{{Key: "absent"}}), "DeleteTags of an absent key")
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-2"))
}

func testTagsUnknownResource(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createVPC(t, s, vpcA, "10.0.0.0/16", tags("Name", "prod")...)
	createSubnet(t, s, subnetA, vpcA, "10.0.1.0/24")
	putInstance(t, s, instA, subnetA, postern.InstanceRunning, tags("Name", "web-1")...)

	for _, missing := range []string{vpcB, subnetB, instB} {
		ids := []string{vpcA, missing, instA}
		err := s.CreateTags(ctx, ids, tags("env", "prod", "Name", "changed"))
		wantKind(t, err, postern.KindNotFound, "CreateTags with unknown "+missing, missing)
		err = s.DeleteTags(ctx, ids, []postern.TagSelector{{Key: "Name"}})
		wantKind(t, err, postern.KindNotFound, "DeleteTags with unknown "+missing, missing)
		err = s.DeleteTags(ctx, ids, nil)
		wantKind(t, err, postern.KindNotFound, "DeleteTags (all) with unknown "+missing, missing)
	}
	// Nothing changed anywhere.
	sameTags(t, vpcA, tagsOf(t, s, vpcA), tags("Name", "prod"))
	sameTags(t, subnetA, tagsOf(t, s, subnetA), nil)
	sameTags(t, instA, tagsOf(t, s, instA), tags("Name", "web-1"))
}

func testDeleteTagsAll(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createVPC(t, s, vpcA, "10.0.0.0/16", tags("Name", "prod", "env", "prod")...)
	createVPC(t, s, vpcB, "10.1.0.0/16", tags("Name", "stage")...)
	ok(t, s.DeleteTags(ctx, []string{vpcA}, nil), "DeleteTags with no selectors")
	sameTags(t, vpcA, tagsOf(t, s, vpcA), nil)
	sameTags(t, vpcB, tagsOf(t, s, vpcB), tags("Name", "stage"))
}
