package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/postern-dev/postern"
)

func createUser(t *testing.T, s postern.Store, name string) *postern.User {
	t.Helper()
	u := &postern.User{Name: name, ID: "AIDA" + name, CreatedAt: stamp(len(name))}
	ok(t, s.CreateUser(t.Context(), u), "CreateUser "+name)
	return u
}

func createGroup(t *testing.T, s postern.Store, name string) *postern.Group {
	t.Helper()
	g := &postern.Group{Name: name, ID: "AGPA" + name, CreatedAt: stamp(len(name))}
	ok(t, s.CreateGroup(t.Context(), g), "CreateGroup "+name)
	return g
}

func createKey(t *testing.T, s postern.Store, id, user string, offset int) *postern.AccessKey {
	t.Helper()
	k := &postern.AccessKey{
		ID: id, UserName: user, Status: postern.AccessKeyActive, CreatedAt: stamp(offset),
		SealedSecret: append([]byte{1, 0, 0xff}, []byte("sealed:"+id)...),
	}
	ok(t, s.CreateAccessKey(t.Context(), k), "CreateAccessKey "+id)
	return k
}

func putPolicy(t *testing.T, s postern.Store, kind postern.PolicyOwnerKind, owner, name string) *postern.InlinePolicy {
	t.Helper()
	p := &postern.InlinePolicy{OwnerKind: kind, OwnerName: owner, Name: name,
		Document: fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Sid":%q,"Effect":"Allow","Action":"*","Resource":"*"}]}`, name)}
	ok(t, s.PutPolicy(t.Context(), p), "PutPolicy "+name)
	return p
}

func userNames(us []postern.User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Name)
	}
	return out
}

func groupNames(gs []postern.Group) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}

func sameUser(t *testing.T, got *postern.User, want *postern.User) {
	t.Helper()
	if got.Name != want.Name || got.ID != want.ID {
		t.Errorf("user = %+v, want %+v", got, want)
	}
	sameTime(t, "user "+want.Name+" CreatedAt", got.CreatedAt, want.CreatedAt)
}

func testUsers(t *testing.T, s postern.Store) {
	ctx := t.Context()
	us, err := s.ListUsers(ctx)
	ok(t, err, "ListUsers of an empty store")
	if len(us) != 0 {
		t.Errorf("ListUsers of an empty store = %v", userNames(us))
	}
	_, err = s.GetUser(ctx, "alice")
	wantKind(t, err, postern.KindNotFound, "GetUser of a missing user", "alice")

	carol := createUser(t, s, "carol")
	alice := createUser(t, s, "alice")
	bob := createUser(t, s, "bob")

	got, err := s.GetUser(ctx, "alice")
	ok(t, err, "GetUser")
	sameUser(t, got, alice)

	err = s.CreateUser(ctx, &postern.User{Name: "alice", ID: "AIDAOTHER", CreatedAt: stamp(0)})
	wantKind(t, err, postern.KindExists, "CreateUser with a taken name", "alice")
	err = s.CreateUser(ctx, &postern.User{Name: "dave", ID: alice.ID, CreatedAt: stamp(0)})
	wantKind(t, err, postern.KindExists, "CreateUser with a taken id")
	// The failed creates changed nothing.
	got, err = s.GetUser(ctx, "alice")
	ok(t, err, "GetUser after a duplicate create")
	sameUser(t, got, alice)
	_, err = s.GetUser(ctx, "dave")
	wantKind(t, err, postern.KindNotFound, "GetUser of a user whose create failed", "dave")

	us, err = s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	if names := userNames(us); !slices.Equal(names, []string{"alice", "bob", "carol"}) {
		t.Fatalf("ListUsers = %v, want alice, bob, carol", names)
	}
	sameUser(t, &us[0], alice)
	sameUser(t, &us[1], bob)
	sameUser(t, &us[2], carol)

	ok(t, s.DeleteUser(ctx, "bob"), "DeleteUser")
	_, err = s.GetUser(ctx, "bob")
	wantKind(t, err, postern.KindNotFound, "GetUser of a deleted user", "bob")
	wantKind(t, s.DeleteUser(ctx, "bob"), postern.KindNotFound, "DeleteUser of a deleted user", "bob")
	us, err = s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	if names := userNames(us); !slices.Equal(names, []string{"alice", "carol"}) {
		t.Errorf("ListUsers after a delete = %v", names)
	}
	// A deleted name can be used again.
	createUser(t, s, "bob")
}

func testUsersConcurrentCreate(t *testing.T, s postern.Store) {
	ctx := t.Context()
	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.CreateUser(ctx, &postern.User{Name: "racer", ID: fmt.Sprintf("AIDARACER%02d", i), CreatedAt: stamp(i)})
		}()
	}
	won := 0
	for range n {
		err := <-errs
		if err == nil {
			won++
			continue
		}
		wantKind(t, err, postern.KindExists, "concurrent CreateUser", "racer")
	}
	if won != 1 {
		t.Errorf("%d concurrent creates of one user succeeded, want 1", won)
	}
}

func testDeleteUserConflicts(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createUser(t, s, "alice")
	createGroup(t, s, "devs")

	createKey(t, s, "AKIAALICE00000000001", "alice", 0)
	wantKind(t, s.DeleteUser(ctx, "alice"), postern.KindConflict, "DeleteUser of a user with an access key", "alice")
	ok(t, s.DeleteAccessKey(ctx, "AKIAALICE00000000001"), "DeleteAccessKey")

	putPolicy(t, s, postern.PolicyOwnerUser, "alice", "own")
	wantKind(t, s.DeleteUser(ctx, "alice"), postern.KindConflict, "DeleteUser of a user with an inline policy", "alice")
	ok(t, s.DeletePolicy(ctx, postern.PolicyOwnerUser, "alice", "own"), "DeletePolicy")

	ok(t, s.AddUserToGroup(ctx, "devs", "alice"), "AddUserToGroup")
	wantKind(t, s.DeleteUser(ctx, "alice"), postern.KindConflict, "DeleteUser of a group member", "alice")
	// The refused deletes left everything in place.
	if _, err := s.GetUser(ctx, "alice"); err != nil {
		t.Fatalf("GetUser after refused deletes: %v", err)
	}
	members, err := s.ListGroupMembers(ctx, "devs")
	ok(t, err, "ListGroupMembers")
	if names := userNames(members); !slices.Equal(names, []string{"alice"}) {
		t.Errorf("members after a refused delete = %v", names)
	}
	ok(t, s.RemoveUserFromGroup(ctx, "devs", "alice"), "RemoveUserFromGroup")

	ok(t, s.DeleteUser(ctx, "alice"), "DeleteUser with nothing attached")
	_, err = s.GetUser(ctx, "alice")
	wantKind(t, err, postern.KindNotFound, "GetUser after delete", "alice")
}

func sameKey(t *testing.T, got, want *postern.AccessKey) {
	t.Helper()
	if got.ID != want.ID || got.UserName != want.UserName || got.Status != want.Status || !bytes.Equal(got.SealedSecret, want.SealedSecret) {
		t.Errorf("access key = %+v, want %+v", got, want)
	}
	sameTime(t, "access key "+want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
}

func testAccessKeys(t *testing.T, s postern.Store) {
	ctx := t.Context()
	err := s.CreateAccessKey(ctx, &postern.AccessKey{ID: "AKIANOBODY0000000000", UserName: "nobody",
		SealedSecret: []byte("x"), Status: postern.AccessKeyActive, CreatedAt: stamp(0)})
	wantKind(t, err, postern.KindNotFound, "CreateAccessKey for a missing user", "nobody")
	_, err = s.GetAccessKey(ctx, "AKIANOBODY0000000000")
	wantKind(t, err, postern.KindNotFound, "GetAccessKey of a key whose create failed", "AKIANOBODY0000000000")

	createUser(t, s, "alice")
	createUser(t, s, "bob")
	k2 := createKey(t, s, "AKIAALICE00000000002", "alice", 20)
	k1 := createKey(t, s, "AKIAALICE00000000001", "alice", 10)
	kb := createKey(t, s, "AKIABOB0000000000001", "bob", 0)

	got, err := s.GetAccessKey(ctx, k1.ID)
	ok(t, err, "GetAccessKey")
	sameKey(t, got, k1)

	dup := *k1
	dup.UserName = "bob"
	wantKind(t, s.CreateAccessKey(ctx, &dup), postern.KindExists, "CreateAccessKey with a taken id", k1.ID)
	got, err = s.GetAccessKey(ctx, k1.ID)
	ok(t, err, "GetAccessKey after a duplicate create")
	sameKey(t, got, k1)

	keys, err := s.ListAccessKeys(ctx, "alice")
	ok(t, err, "ListAccessKeys")
	if len(keys) != 2 {
		t.Fatalf("ListAccessKeys(alice) returned %d keys, want 2", len(keys))
	}
	sameKey(t, &keys[0], k1) // oldest first
	sameKey(t, &keys[1], k2)
	keys, err = s.ListAccessKeys(ctx, "bob")
	ok(t, err, "ListAccessKeys")
	if len(keys) != 1 {
		t.Fatalf("ListAccessKeys(bob) returned %d keys, want 1", len(keys))
	}
	sameKey(t, &keys[0], kb)
	_, err = s.ListAccessKeys(ctx, "nobody")
	wantKind(t, err, postern.KindNotFound, "ListAccessKeys of a missing user", "nobody")

	ok(t, s.UpdateAccessKeyStatus(ctx, k1.ID, postern.AccessKeyInactive), "UpdateAccessKeyStatus")
	got, err = s.GetAccessKey(ctx, k1.ID)
	ok(t, err, "GetAccessKey")
	if got.Status != postern.AccessKeyInactive {
		t.Errorf("status after deactivation = %q", got.Status)
	}
	if got, _ := s.GetAccessKey(ctx, k2.ID); got == nil || got.Status != postern.AccessKeyActive {
		t.Errorf("deactivating one key changed another: %+v", got)
	}
	ok(t, s.UpdateAccessKeyStatus(ctx, k1.ID, postern.AccessKeyActive), "UpdateAccessKeyStatus")
	got, err = s.GetAccessKey(ctx, k1.ID)
	ok(t, err, "GetAccessKey")
	if got.Status != postern.AccessKeyActive {
		t.Errorf("status after reactivation = %q", got.Status)
	}
	wantKind(t, s.UpdateAccessKeyStatus(ctx, "AKIAMISSING000000000", postern.AccessKeyInactive),
		postern.KindNotFound, "UpdateAccessKeyStatus of a missing key", "AKIAMISSING000000000")

	ok(t, s.DeleteAccessKey(ctx, k1.ID), "DeleteAccessKey")
	_, err = s.GetAccessKey(ctx, k1.ID)
	wantKind(t, err, postern.KindNotFound, "GetAccessKey of a deleted key", k1.ID)
	wantKind(t, s.DeleteAccessKey(ctx, k1.ID), postern.KindNotFound, "DeleteAccessKey of a deleted key", k1.ID)
	keys, err = s.ListAccessKeys(ctx, "alice")
	ok(t, err, "ListAccessKeys")
	if len(keys) != 1 || keys[0].ID != k2.ID {
		t.Errorf("ListAccessKeys after a delete = %+v", keys)
	}
}

func testGroups(t *testing.T, s postern.Store) {
	ctx := t.Context()
	gs, err := s.ListGroups(ctx)
	ok(t, err, "ListGroups of an empty store")
	if len(gs) != 0 {
		t.Errorf("ListGroups of an empty store = %v", groupNames(gs))
	}
	_, err = s.GetGroup(ctx, "ops")
	wantKind(t, err, postern.KindNotFound, "GetGroup of a missing group", "ops")

	ops := createGroup(t, s, "ops")
	devs := createGroup(t, s, "devs")
	got, err := s.GetGroup(ctx, "ops")
	ok(t, err, "GetGroup")
	if got.Name != ops.Name || got.ID != ops.ID {
		t.Errorf("GetGroup = %+v, want %+v", got, ops)
	}
	sameTime(t, "group CreatedAt", got.CreatedAt, ops.CreatedAt)

	wantKind(t, s.CreateGroup(ctx, &postern.Group{Name: "ops", ID: "AGPAOTHER", CreatedAt: stamp(0)}),
		postern.KindExists, "CreateGroup with a taken name", "ops")
	wantKind(t, s.CreateGroup(ctx, &postern.Group{Name: "qa", ID: devs.ID, CreatedAt: stamp(0)}),
		postern.KindExists, "CreateGroup with a taken id")

	gs, err = s.ListGroups(ctx)
	ok(t, err, "ListGroups")
	if names := groupNames(gs); !slices.Equal(names, []string{"devs", "ops"}) {
		t.Errorf("ListGroups = %v, want devs, ops", names)
	}
	// A user and a group may share a name.
	createUser(t, s, "ops")

	ok(t, s.DeleteGroup(ctx, "ops"), "DeleteGroup")
	_, err = s.GetGroup(ctx, "ops")
	wantKind(t, err, postern.KindNotFound, "GetGroup of a deleted group", "ops")
	wantKind(t, s.DeleteGroup(ctx, "ops"), postern.KindNotFound, "DeleteGroup of a deleted group", "ops")
	if _, err := s.GetUser(ctx, "ops"); err != nil {
		t.Errorf("deleting group ops touched user ops: %v", err)
	}
}

func testGroupMembership(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createUser(t, s, "alice")
	createUser(t, s, "bob")
	createGroup(t, s, "devs")
	createGroup(t, s, "ops")

	wantKind(t, s.AddUserToGroup(ctx, "nogroup", "alice"), postern.KindNotFound, "AddUserToGroup to a missing group", "nogroup")
	wantKind(t, s.AddUserToGroup(ctx, "devs", "nobody"), postern.KindNotFound, "AddUserToGroup of a missing user", "nobody")

	ok(t, s.AddUserToGroup(ctx, "devs", "bob"), "AddUserToGroup")
	ok(t, s.AddUserToGroup(ctx, "devs", "alice"), "AddUserToGroup")
	ok(t, s.AddUserToGroup(ctx, "ops", "alice"), "AddUserToGroup")
	ok(t, s.AddUserToGroup(ctx, "devs", "alice"), "AddUserToGroup of a member (IAM accepts it)")

	members, err := s.ListGroupMembers(ctx, "devs")
	ok(t, err, "ListGroupMembers")
	if names := userNames(members); !slices.Equal(names, []string{"alice", "bob"}) {
		t.Errorf("ListGroupMembers(devs) = %v, want alice, bob", names)
	}
	if len(members) > 0 && members[0].ID == "" {
		t.Errorf("ListGroupMembers returned users without ids: %+v", members)
	}
	groups, err := s.ListGroupsForUser(ctx, "alice")
	ok(t, err, "ListGroupsForUser")
	if names := groupNames(groups); !slices.Equal(names, []string{"devs", "ops"}) {
		t.Errorf("ListGroupsForUser(alice) = %v, want devs, ops", names)
	}
	if len(groups) > 0 && groups[0].ID == "" {
		t.Errorf("ListGroupsForUser returned groups without ids: %+v", groups)
	}
	_, err = s.ListGroupMembers(ctx, "nogroup")
	wantKind(t, err, postern.KindNotFound, "ListGroupMembers of a missing group", "nogroup")
	_, err = s.ListGroupsForUser(ctx, "nobody")
	wantKind(t, err, postern.KindNotFound, "ListGroupsForUser of a missing user", "nobody")

	wantKind(t, s.RemoveUserFromGroup(ctx, "ops", "bob"), postern.KindNotFound, "RemoveUserFromGroup of a non-member", "bob")
	wantKind(t, s.RemoveUserFromGroup(ctx, "nogroup", "bob"), postern.KindNotFound, "RemoveUserFromGroup from a missing group", "nogroup")
	wantKind(t, s.RemoveUserFromGroup(ctx, "ops", "nobody"), postern.KindNotFound, "RemoveUserFromGroup of a missing user", "nobody")
	ok(t, s.RemoveUserFromGroup(ctx, "devs", "alice"), "RemoveUserFromGroup")
	groups, err = s.ListGroupsForUser(ctx, "alice")
	ok(t, err, "ListGroupsForUser")
	if names := groupNames(groups); !slices.Equal(names, []string{"ops"}) {
		t.Errorf("ListGroupsForUser(alice) after removal = %v, want ops", names)
	}
	groups, err = s.ListGroupsForUser(ctx, "bob")
	ok(t, err, "ListGroupsForUser")
	if names := groupNames(groups); !slices.Equal(names, []string{"devs"}) {
		t.Errorf("ListGroupsForUser(bob) = %v, want devs", names)
	}
	members, err = s.ListGroupMembers(ctx, "ops")
	ok(t, err, "ListGroupMembers")
	if names := userNames(members); !slices.Equal(names, []string{"alice"}) {
		t.Errorf("ListGroupMembers(ops) = %v, want alice", names)
	}
}

func testDeleteGroupConflicts(t *testing.T, s postern.Store) {
	ctx := t.Context()
	createUser(t, s, "alice")
	createGroup(t, s, "devs")

	ok(t, s.AddUserToGroup(ctx, "devs", "alice"), "AddUserToGroup")
	wantKind(t, s.DeleteGroup(ctx, "devs"), postern.KindConflict, "DeleteGroup with a member", "devs")
	ok(t, s.RemoveUserFromGroup(ctx, "devs", "alice"), "RemoveUserFromGroup")

	putPolicy(t, s, postern.PolicyOwnerGroup, "devs", "deploy")
	wantKind(t, s.DeleteGroup(ctx, "devs"), postern.KindConflict, "DeleteGroup with an inline policy", "devs")
	if _, err := s.GetPolicy(ctx, postern.PolicyOwnerGroup, "devs", "deploy"); err != nil {
		t.Errorf("a refused DeleteGroup lost the group's policy: %v", err)
	}
	ok(t, s.DeletePolicy(ctx, postern.PolicyOwnerGroup, "devs", "deploy"), "DeletePolicy")

	ok(t, s.DeleteGroup(ctx, "devs"), "DeleteGroup with nothing attached")
}

func samePolicy(t *testing.T, got, want *postern.InlinePolicy) {
	t.Helper()
	if *got != *want {
		t.Errorf("policy = %+v, want %+v", got, want)
	}
}

func testPolicies(t *testing.T, s postern.Store) {
	ctx := t.Context()
	for _, kind := range []postern.PolicyOwnerKind{postern.PolicyOwnerUser, postern.PolicyOwnerGroup} {
		err := s.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: kind, OwnerName: "nobody", Name: "p", Document: "{}"})
		wantKind(t, err, postern.KindNotFound, fmt.Sprintf("PutPolicy for a missing %s", kind), "nobody")
	}
	createUser(t, s, "alice")
	createGroup(t, s, "alice") // same name, other kind
	up2 := putPolicy(t, s, postern.PolicyOwnerUser, "alice", "second")
	up1 := putPolicy(t, s, postern.PolicyOwnerUser, "alice", "first")
	gp := putPolicy(t, s, postern.PolicyOwnerGroup, "alice", "first")

	got, err := s.GetPolicy(ctx, postern.PolicyOwnerUser, "alice", "first")
	ok(t, err, "GetPolicy")
	samePolicy(t, got, up1)
	got, err = s.GetPolicy(ctx, postern.PolicyOwnerGroup, "alice", "first")
	ok(t, err, "GetPolicy of a group")
	samePolicy(t, got, gp)
	_, err = s.GetPolicy(ctx, postern.PolicyOwnerUser, "alice", "missing")
	wantKind(t, err, postern.KindNotFound, "GetPolicy of a missing policy", "missing")
	_, err = s.GetPolicy(ctx, postern.PolicyOwnerUser, "nobody", "first")
	wantKind(t, err, postern.KindNotFound, "GetPolicy of a missing user", "nobody")

	// PutPolicy replaces a policy of the same name.
	replaced := *up1
	replaced.Document = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`
	ok(t, s.PutPolicy(ctx, &replaced), "PutPolicy replacing a policy")
	got, err = s.GetPolicy(ctx, postern.PolicyOwnerUser, "alice", "first")
	ok(t, err, "GetPolicy")
	samePolicy(t, got, &replaced)
	got, err = s.GetPolicy(ctx, postern.PolicyOwnerGroup, "alice", "first")
	ok(t, err, "GetPolicy of a group")
	samePolicy(t, got, gp)

	ps, err := s.ListPolicies(ctx, postern.PolicyOwnerUser, "alice")
	ok(t, err, "ListPolicies")
	if len(ps) != 2 {
		t.Fatalf("ListPolicies(user alice) returned %d policies, want 2", len(ps))
	}
	samePolicy(t, &ps[0], &replaced)
	samePolicy(t, &ps[1], up2)
	ps, err = s.ListPolicies(ctx, postern.PolicyOwnerGroup, "alice")
	ok(t, err, "ListPolicies of a group")
	if len(ps) != 1 {
		t.Fatalf("ListPolicies(group alice) returned %d policies, want 1", len(ps))
	}
	samePolicy(t, &ps[0], gp)
	_, err = s.ListPolicies(ctx, postern.PolicyOwnerGroup, "nobody")
	wantKind(t, err, postern.KindNotFound, "ListPolicies of a missing group", "nobody")

	ok(t, s.DeletePolicy(ctx, postern.PolicyOwnerUser, "alice", "first"), "DeletePolicy")
	_, err = s.GetPolicy(ctx, postern.PolicyOwnerUser, "alice", "first")
	wantKind(t, err, postern.KindNotFound, "GetPolicy of a deleted policy", "first")
	wantKind(t, s.DeletePolicy(ctx, postern.PolicyOwnerUser, "alice", "first"),
		postern.KindNotFound, "DeletePolicy of a deleted policy", "first")
	if _, err := s.GetPolicy(ctx, postern.PolicyOwnerGroup, "alice", "first"); err != nil {
		t.Errorf("deleting a user's policy deleted the group's namesake: %v", err)
	}
	wantKind(t, s.DeletePolicy(ctx, postern.PolicyOwnerGroup, "nobody", "first"),
		postern.KindNotFound, "DeletePolicy of a missing group", "nobody")
}

func testPoliciesForUser(t *testing.T, s postern.Store) {
	ctx := t.Context()
	_, err := s.PoliciesForUser(ctx, "nobody")
	wantKind(t, err, postern.KindNotFound, "PoliciesForUser of a missing user", "nobody")

	createUser(t, s, "alice")
	createUser(t, s, "bob")
	createGroup(t, s, "devs")
	createGroup(t, s, "ops")
	createGroup(t, s, "admins")
	ps, err := s.PoliciesForUser(ctx, "alice")
	ok(t, err, "PoliciesForUser with no policies")
	if len(ps) != 0 {
		t.Errorf("PoliciesForUser with no policies = %+v", ps)
	}

	own := putPolicy(t, s, postern.PolicyOwnerUser, "alice", "own")
	putPolicy(t, s, postern.PolicyOwnerUser, "bob", "bobs")
	dev := putPolicy(t, s, postern.PolicyOwnerGroup, "devs", "deploy")
	ops1 := putPolicy(t, s, postern.PolicyOwnerGroup, "ops", "oncall")
	ops2 := putPolicy(t, s, postern.PolicyOwnerGroup, "ops", "debug")
	putPolicy(t, s, postern.PolicyOwnerGroup, "admins", "everything")
	ok(t, s.AddUserToGroup(ctx, "devs", "alice"), "AddUserToGroup")
	ok(t, s.AddUserToGroup(ctx, "ops", "alice"), "AddUserToGroup")
	ok(t, s.AddUserToGroup(ctx, "admins", "bob"), "AddUserToGroup")

	ps, err = s.PoliciesForUser(ctx, "alice")
	ok(t, err, "PoliciesForUser")
	want := []postern.InlinePolicy{*own, *dev, *ops2, *ops1}
	if !slices.Equal(ps, want) {
		t.Errorf("PoliciesForUser(alice) =\n%+v\nwant (own, then by group and name)\n%+v", ps, want)
	}

	ok(t, s.RemoveUserFromGroup(ctx, "ops", "alice"), "RemoveUserFromGroup")
	ps, err = s.PoliciesForUser(ctx, "alice")
	ok(t, err, "PoliciesForUser")
	if want := []postern.InlinePolicy{*own, *dev}; !slices.Equal(ps, want) {
		t.Errorf("PoliciesForUser(alice) after leaving ops = %+v, want %+v", ps, want)
	}
}
