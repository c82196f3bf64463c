package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

const (
	eiceA = "eice-0a000000000000001"
	eiceB = "eice-0b000000000000002"
	eiceC = "eice-0c000000000000003"
)

func newEndpoint(id, subnet string, tags ...postern.Tag) *postern.Endpoint {
	return &postern.Endpoint{
		ID: id, SubnetID: subnet, VPCID: vpcA, AvailabilityZone: "eu-west-1a",
		State: postern.EndpointCreateInProgress, StateMessage: "waiting for the endpoint to join",
		SecurityGroupIDs: []string{"sg-0123456789abcdef0"},
		EndpointSettings: postern.EndpointSettings{AllowedPorts: []int{22, 3389}, MaxConnections: 20, MaxTunnelDuration: time.Hour},
		ClientToken:      "token-" + id, RequestDigest: []byte{1, 2, 3}, CredentialHash: bytes.Repeat([]byte{7}, 32),
		Tags: tags, CreatedAt: stamp(3), CreatedBy: "arn:aws:iam::123456789012:user/admin",
	}
}

// endpointFixture creates a VPC with two subnets.
func endpointFixture(t *testing.T, s postern.Store) {
	t.Helper()
	createVPC(t, s, vpcA, "10.0.0.0/16")
	createSubnet(t, s, subnetA, vpcA, "10.0.1.0/24")
	createSubnet(t, s, subnetB, vpcA, "10.0.2.0/24")
}

func createEndpoint(t *testing.T, s postern.Store, e *postern.Endpoint) *postern.Endpoint {
	t.Helper()
	ok(t, s.CreateEndpoint(t.Context(), e), "CreateEndpoint "+e.ID)
	return e
}

func sameEndpoint(t *testing.T, got, want *postern.Endpoint) {
	t.Helper()
	type fields struct {
		ID, SubnetID, VPCID, AZ, State, StateMessage, DNSName, FIPSDNSName string
		PreserveClientIP                                                   bool
		MaxConnections                                                     int
		MaxTunnelDuration                                                  time.Duration
		ClientToken, CreatedBy                                             string
	}
	g := fields{got.ID, got.SubnetID, got.VPCID, got.AvailabilityZone, got.State, got.StateMessage, got.DNSName, got.FIPSDNSName,
		got.PreserveClientIP, got.MaxConnections, got.MaxTunnelDuration, got.ClientToken, got.CreatedBy}
	w := fields{want.ID, want.SubnetID, want.VPCID, want.AvailabilityZone, want.State, want.StateMessage, want.DNSName, want.FIPSDNSName,
		want.PreserveClientIP, want.MaxConnections, want.MaxTunnelDuration, want.ClientToken, want.CreatedBy}
	if g != w {
		t.Errorf("endpoint = %+v, want %+v", g, w)
	}
	if !slices.Equal(got.AllowedPorts, want.AllowedPorts) || !slices.Equal(got.SecurityGroupIDs, want.SecurityGroupIDs) {
		t.Errorf("endpoint %s ports %v, groups %v; want %v, %v", want.ID, got.AllowedPorts, got.SecurityGroupIDs, want.AllowedPorts, want.SecurityGroupIDs)
	}
	if !bytes.Equal(got.RequestDigest, want.RequestDigest) || !bytes.Equal(got.CredentialHash, want.CredentialHash) {
		t.Errorf("endpoint %s digest %x, credential hash %x; want %x, %x", want.ID, got.RequestDigest, got.CredentialHash, want.RequestDigest, want.CredentialHash)
	}
	sameTime(t, "endpoint "+want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	sameTime(t, "endpoint "+want.ID+" JoinedAt", got.JoinedAt, want.JoinedAt)
	sameTags(t, "endpoint "+want.ID, got.Tags, want.Tags)
}

func endpointIDs(es []postern.Endpoint) []string {
	return ids(es, func(e *postern.Endpoint) string { return e.ID })
}

func getEndpoint(t *testing.T, s postern.Store, id string) *postern.Endpoint {
	t.Helper()
	e, err := s.GetEndpoint(t.Context(), id)
	ok(t, err, "GetEndpoint "+id)
	return e
}

func testEndpoints(t *testing.T, s postern.Store) {
	ctx := t.Context()
	es, err := s.ListEndpoints(ctx, nil)
	ok(t, err, "ListEndpoints of an empty store")
	if len(es) != 0 {
		t.Errorf("ListEndpoints of an empty store = %v", endpointIDs(es))
	}
	_, err = s.GetEndpoint(ctx, eiceA)
	wantKind(t, err, postern.KindNotFound, "GetEndpoint of a missing endpoint", eiceA)
	wantKind(t, s.CreateEndpoint(ctx, newEndpoint(eiceA, subnetA)), postern.KindNotFound, "CreateEndpoint in a missing subnet", subnetA)

	endpointFixture(t, s)
	b := createEndpoint(t, s, newEndpoint(eiceB, subnetB))
	a := createEndpoint(t, s, newEndpoint(eiceA, subnetA, postern.Tag{Key: "Name", Value: "edge"}, postern.Tag{Key: "env", Value: ""}))
	got := getEndpoint(t, s, eiceA)
	sameEndpoint(t, got, a)
	if !got.Live() {
		t.Errorf("a new endpoint is not Live")
	}

	es, err = s.ListEndpoints(ctx, nil)
	ok(t, err, "ListEndpoints")
	if !slices.Equal(endpointIDs(es), []string{eiceA, eiceB}) {
		t.Fatalf("ListEndpoints = %v, want by id", endpointIDs(es))
	}
	sameEndpoint(t, &es[0], a)
	sameEndpoint(t, &es[1], b)
	es, err = s.ListEndpoints(ctx, []string{eiceB, eiceB})
	ok(t, err, "ListEndpoints by id")
	if !slices.Equal(endpointIDs(es), []string{eiceB}) {
		t.Errorf("ListEndpoints(B, B) = %v", endpointIDs(es))
	}
	_, err = s.ListEndpoints(ctx, []string{eiceA, eiceC})
	wantKind(t, err, postern.KindNotFound, "ListEndpoints with an unknown id", eiceC)

	// An endpoint with no groups, ports or tags reads back as empty.
	createSubnet(t, s, "subnet-0c00000000000003", vpcA, "10.0.3.0/24")
	bare := newEndpoint(eiceC, "subnet-0c00000000000003")
	bare.SecurityGroupIDs, bare.AllowedPorts, bare.ClientToken, bare.RequestDigest = nil, nil, "", nil
	createEndpoint(t, s, bare)
	got = getEndpoint(t, s, eiceC)
	if len(got.SecurityGroupIDs) != 0 || len(got.AllowedPorts) != 0 || len(got.Tags) != 0 || got.ClientToken != "" {
		t.Errorf("a bare endpoint reads back as %+v", got)
	}

	// Endpoints are taggable resources.
	ok(t, s.CreateTags(ctx, []string{eiceB}, tags("team", "ops")), "CreateTags on an endpoint")
	sameTags(t, "endpoint "+eiceB, tagsOf(t, s, eiceB), tags("team", "ops"))
	ok(t, s.DeleteTags(ctx, []string{eiceB}, nil), "DeleteTags on an endpoint")
	sameTags(t, "endpoint "+eiceB, tagsOf(t, s, eiceB), nil)
	wantKind(t, s.CreateTags(ctx, []string{"eice-0ffffffffffffffff"}, tags("k", "v")), postern.KindNotFound,
		"CreateTags on a missing endpoint", "eice-0ffffffffffffffff")
}

func testEndpointCreateConflicts(t *testing.T, s postern.Store) {
	ctx := t.Context()
	endpointFixture(t, s)
	createEndpoint(t, s, newEndpoint(eiceA, subnetA))

	again := newEndpoint(eiceA, subnetB)
	again.ClientToken = ""
	wantKind(t, s.CreateEndpoint(ctx, again), postern.KindExists, "CreateEndpoint with a used id", eiceA)

	second := newEndpoint(eiceB, subnetA)
	wantKind(t, s.CreateEndpoint(ctx, second), postern.KindConflict, "a second endpoint in a subnet", subnetA, eiceA)

	reused := newEndpoint(eiceB, subnetB)
	reused.ClientToken = "token-" + eiceA
	wantKind(t, s.CreateEndpoint(ctx, reused), postern.KindExists, "CreateEndpoint with a used client token", "token-"+eiceA, eiceA)

	// Nothing of the refused calls was stored.
	es, err := s.ListEndpoints(ctx, nil)
	ok(t, err, "ListEndpoints")
	if !slices.Equal(endpointIDs(es), []string{eiceA}) || es[0].SubnetID != subnetA {
		t.Errorf("after refused creates, endpoints = %v", endpointIDs(es))
	}

	// A subnet with a live endpoint cannot be deleted; once the endpoint
	// is deleted it can, and the subnet takes a new endpoint meanwhile.
	wantKind(t, s.DeleteSubnet(ctx, subnetA), postern.KindConflict, "DeleteSubnet with a live endpoint", subnetA, eiceA)
	_, err = s.DeleteEndpoint(ctx, eiceA)
	ok(t, err, "DeleteEndpoint")
	createEndpoint(t, s, newEndpoint(eiceC, subnetA))
	_, err = s.DeleteEndpoint(ctx, eiceC)
	ok(t, err, "DeleteEndpoint")
	ok(t, s.DeleteSubnet(ctx, subnetA), "DeleteSubnet once its endpoints are deleted")
	got := getEndpoint(t, s, eiceA)
	if got.State != postern.EndpointDeleteComplete || got.SubnetID != subnetA {
		t.Errorf("a deleted endpoint reads back as %s in %s", got.State, got.SubnetID)
	}
}

func testEndpointSettings(t *testing.T, s postern.Store) {
	ctx := t.Context()
	endpointFixture(t, s)
	a := createEndpoint(t, s, newEndpoint(eiceA, subnetA))
	set := postern.EndpointSettings{AllowedPorts: []int{22, 443, 5432}, MaxConnections: 5, MaxTunnelDuration: 90 * time.Second}
	ok(t, s.UpdateEndpointSettings(ctx, eiceA, set), "UpdateEndpointSettings")
	a.EndpointSettings = set
	sameEndpoint(t, getEndpoint(t, s, eiceA), a)

	wantKind(t, s.UpdateEndpointSettings(ctx, eiceB, set), postern.KindNotFound, "UpdateEndpointSettings of a missing endpoint", eiceB)
	_, err := s.DeleteEndpoint(ctx, eiceA)
	ok(t, err, "DeleteEndpoint")
	wantKind(t, s.UpdateEndpointSettings(ctx, eiceA, postern.EndpointSettings{AllowedPorts: []int{22}, MaxConnections: 1, MaxTunnelDuration: time.Second}),
		postern.KindConflict, "UpdateEndpointSettings of a deleted endpoint", eiceA)
	if got := getEndpoint(t, s, eiceA); !slices.Equal(got.AllowedPorts, set.AllowedPorts) {
		t.Errorf("a refused update changed the ports to %v", got.AllowedPorts)
	}
}

func testJoinEndpoint(t *testing.T, s postern.Store) {
	ctx := t.Context()
	endpointFixture(t, s)
	a := createEndpoint(t, s, newEndpoint(eiceA, subnetA))

	wantKind(t, s.JoinEndpoint(ctx, eiceB, "", stamp(10)), postern.KindNotFound, "JoinEndpoint of a missing endpoint", eiceB)

	ok(t, s.JoinEndpoint(ctx, eiceA, "edge.example.net:8443", stamp(10)), "JoinEndpoint")
	a.State, a.StateMessage, a.JoinedAt = postern.EndpointCreateComplete, "", stamp(10)
	a.DNSName, a.FIPSDNSName = "edge.example.net:8443", "edge.example.net:8443"
	sameEndpoint(t, getEndpoint(t, s, eiceA), a)

	// Later joins keep the first join time and state; an empty name keeps
	// the one there is.
	ok(t, s.JoinEndpoint(ctx, eiceA, "", stamp(20)), "JoinEndpoint again")
	sameEndpoint(t, getEndpoint(t, s, eiceA), a)
	ok(t, s.JoinEndpoint(ctx, eiceA, "edge2.example.net", stamp(30)), "JoinEndpoint with a new name")
	a.DNSName, a.FIPSDNSName = "edge2.example.net", "edge2.example.net"
	sameEndpoint(t, getEndpoint(t, s, eiceA), a)

	_, err := s.DeleteEndpoint(ctx, eiceA)
	ok(t, err, "DeleteEndpoint")
	wantKind(t, s.JoinEndpoint(ctx, eiceA, "", stamp(40)), postern.KindConflict, "JoinEndpoint of a deleted endpoint", eiceA)
}

func testDeleteEndpoint(t *testing.T, s postern.Store) {
	ctx := t.Context()
	endpointFixture(t, s)
	createEndpoint(t, s, newEndpoint(eiceA, subnetA))
	createEndpoint(t, s, newEndpoint(eiceB, subnetB, postern.Tag{Key: "Name", Value: "b"}))

	_, err := s.DeleteEndpoint(ctx, eiceC)
	wantKind(t, err, postern.KindNotFound, "DeleteEndpoint of a missing endpoint", eiceC)

	// Never joined: nothing to wind down.
	got, err := s.DeleteEndpoint(ctx, eiceA)
	ok(t, err, "DeleteEndpoint of an endpoint that never joined")
	if got.ID != eiceA || got.State != postern.EndpointDeleteComplete || got.Live() {
		t.Errorf("DeleteEndpoint returned %s in state %s, want %s", got.ID, got.State, postern.EndpointDeleteComplete)
	}
	_, err = s.DeleteEndpoint(ctx, eiceA)
	wantKind(t, err, postern.KindConflict, "DeleteEndpoint again", eiceA)
	wantKind(t, s.CompleteEndpointDeletion(ctx, eiceA), postern.KindConflict, "CompleteEndpointDeletion of a deleted endpoint", eiceA)

	// Joined: its process closes its tunnels, then completes.
	ok(t, s.JoinEndpoint(ctx, eiceB, "", stamp(5)), "JoinEndpoint")
	wantKind(t, s.CompleteEndpointDeletion(ctx, eiceB), postern.KindConflict, "CompleteEndpointDeletion of a live endpoint", eiceB)
	got, err = s.DeleteEndpoint(ctx, eiceB)
	ok(t, err, "DeleteEndpoint of a joined endpoint")
	if got.State != postern.EndpointDeleteInProgress {
		t.Errorf("DeleteEndpoint of a joined endpoint: state %s, want %s", got.State, postern.EndpointDeleteInProgress)
	}
	sameTags(t, "deleted endpoint "+eiceB, got.Tags, tags("Name", "b"))
	if e := getEndpoint(t, s, eiceB); e.State != postern.EndpointDeleteInProgress {
		t.Errorf("GetEndpoint after DeleteEndpoint: state %s", e.State)
	}
	ok(t, s.CompleteEndpointDeletion(ctx, eiceB), "CompleteEndpointDeletion")
	if e := getEndpoint(t, s, eiceB); e.State != postern.EndpointDeleteComplete {
		t.Errorf("after CompleteEndpointDeletion: state %s", e.State)
	}
	wantKind(t, s.CompleteEndpointDeletion(ctx, eiceC), postern.KindNotFound, "CompleteEndpointDeletion of a missing endpoint", eiceC)
}

func liveTunnel(id, endpoint, process string) *postern.LiveTunnel {
	return &postern.LiveTunnel{ID: id, EndpointID: endpoint, ProcessID: process, OpenedAt: stamp(10), Detail: []byte(`{"target":"10.0.1.5"}`)}
}

// testLiveTunnels: the limit is shared by an endpoint's processes, a
// closed tunnel frees its place, and a process gone silent stops counting.
func testLiveTunnels(t *testing.T, s postern.Store) {
	ctx := t.Context()
	seen, stale := stamp(100), stamp(90) // processes seen at 100 count when stale is 90
	for _, p := range []string{"p1", "p2"} {
		ok(t, s.TouchEndpointProcess(ctx, eiceA, p, seen), "TouchEndpointProcess "+p)
	}
	ok(t, s.TouchEndpointProcess(ctx, eiceB, "p9", seen), "TouchEndpointProcess p9")
	if n, err := s.LiveEndpointProcesses(ctx, eiceA, stale); err != nil || n != 2 {
		t.Errorf("LiveEndpointProcesses of %s = %d, %v; want 2", eiceA, n, err)
	}
	if n, err := s.LiveEndpointProcesses(ctx, eiceA, stamp(101)); err != nil || n != 0 {
		t.Errorf("LiveEndpointProcesses of %s seen after both = %d, %v; want 0", eiceA, n, err)
	}
	ok(t, s.OpenTunnel(ctx, liveTunnel("t1", eiceA, "p1"), 3, stale), "OpenTunnel t1")
	ok(t, s.OpenTunnel(ctx, liveTunnel("t2", eiceA, "p2"), 3, stale), "OpenTunnel t2")
	ok(t, s.OpenTunnel(ctx, liveTunnel("t3", eiceA, "p2"), 3, stale), "OpenTunnel t3")
	wantKind(t, s.OpenTunnel(ctx, liveTunnel("t4", eiceA, "p1"), 3, stale), postern.KindLimit, "a 4th tunnel of a limit of 3", "3")
	// Another endpoint has its own count.
	ok(t, s.OpenTunnel(ctx, liveTunnel("t9", eiceB, "p9"), 1, stale), "OpenTunnel on another endpoint")
	wantKind(t, s.OpenTunnel(ctx, liveTunnel("t1", eiceB, "p9"), 5, stale), postern.KindExists, "a tunnel id twice", "t1")

	counts, err := s.CountTunnels(ctx, stale)
	ok(t, err, "CountTunnels")
	if counts[eiceA] != 3 || counts[eiceB] != 1 || len(counts) != 2 {
		t.Errorf("CountTunnels = %v, want %s:3 %s:1", counts, eiceA, eiceB)
	}

	got, err := s.CloseTunnel(ctx, "t2")
	ok(t, err, "CloseTunnel t2")
	if got.ID != "t2" || got.EndpointID != eiceA || got.ProcessID != "p2" || string(got.Detail) != `{"target":"10.0.1.5"}` {
		t.Errorf("CloseTunnel returned %+v", got)
	}
	sameTime(t, "closed tunnel's OpenedAt", got.OpenedAt, stamp(10))
	_, err = s.CloseTunnel(ctx, "t2")
	wantKind(t, err, postern.KindNotFound, "closing a tunnel twice", "t2")
	ok(t, s.OpenTunnel(ctx, liveTunnel("t4", eiceA, "p1"), 3, stale), "OpenTunnel t4 after a close")

	// p2 goes silent: once its last sighting is stale, its tunnel (t3)
	// stops counting and is forgotten.
	ok(t, s.TouchEndpointProcess(ctx, eiceA, "p1", stamp(200)), "TouchEndpointProcess p1 later")
	later := stamp(150)
	counts, err = s.CountTunnels(ctx, later)
	ok(t, err, "CountTunnels later")
	if counts[eiceA] != 2 {
		t.Errorf("with p2 silent, %s counts %d tunnels, want p1's 2", eiceA, counts[eiceA])
	}
	ok(t, s.OpenTunnel(ctx, liveTunnel("t5", eiceA, "p1"), 3, later), "OpenTunnel t5 in the place of p2's tunnel")
	_, err = s.CloseTunnel(ctx, "t3")
	wantKind(t, err, postern.KindNotFound, "closing a forgotten tunnel", "t3")
}

// testLiveTunnelsConcurrent: however many processes open tunnels at once,
// no more than the limit are recorded.
func testLiveTunnelsConcurrent(t *testing.T, s postern.Store) {
	ctx := t.Context()
	const limit, tries = 5, 24
	for p := range 4 {
		ok(t, s.TouchEndpointProcess(ctx, eiceA, fmt.Sprint("p", p), stamp(100)), "TouchEndpointProcess")
	}
	errs := make(chan error, tries)
	for i := range tries {
		go func() {
			errs <- s.OpenTunnel(ctx, liveTunnel(fmt.Sprint("t", i), eiceA, fmt.Sprint("p", i%4)), limit, stamp(90))
		}()
	}
	opened := 0
	for range tries {
		err := <-errs
		switch {
		case err == nil:
			opened++
		case postern.IsKind(err, postern.KindLimit):
		default:
			t.Errorf("OpenTunnel: %v", err)
		}
	}
	if opened != limit {
		t.Errorf("%d of %d concurrent tunnels were recorded with a limit of %d", opened, tries, limit)
	}
}
