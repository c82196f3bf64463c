// Package storetest is the conformance suite for postern.Store. Every
// implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) postern.Store { return openTemp(t) })
//	}
//
// The suite checks the contract written in store.go, plus what the rest of
// Postern relies on and every store can promise:
//
//   - errors are *postern.Error: KindNotFound, KindExists and KindConflict
//     as documented, with a message that names the thing (user name,
//     resource id, …);
//   - lists are sorted: users and groups by name, access keys oldest first,
//     VPCs, subnets and instances by id, policies by name (a user's own
//     before its groups'), tags by key, activations oldest first; audit
//     lookups newest first;
//   - times round-trip to the nanosecond (time.Equal), zero times stay zero;
//   - DeleteTags with no selectors removes every tag of the resources, as
//     EC2's DeleteTags does when no Tag parameter is given;
//   - RegisterInstance never lets more instances in than an activation's
//     limit, however many agents register at once;
//   - recordings list newest first (by start time, then id) and page
//     without skipping or repeating ties;
//   - the audit chain is contiguous from 1 and linked by postern.ChainHash
//     however many goroutines append at once.
package storetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern-dev/postern"
)

// Run runs every conformance test. newStore must return a new, empty
// store for each call and arrange (with t.Cleanup) for it to be closed;
// the suite never closes a store itself except where a test says so.
func Run(t *testing.T, newStore func(t *testing.T) postern.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, postern.Store)
	}{
		{"Ping", testPing},
		{"Meta", testMeta},
		{"MetaConcurrent", testMetaConcurrent},
		{"Users", testUsers},
		{"UsersConcurrentCreate", testUsersConcurrentCreate},
		{"DeleteUserConflicts", testDeleteUserConflicts},
		{"AccessKeys", testAccessKeys},
		{"Groups", testGroups},
		{"GroupMembership", testGroupMembership},
		{"DeleteGroupConflicts", testDeleteGroupConflicts},
		{"Policies", testPolicies},
		{"PoliciesForUser", testPoliciesForUser},
		{"LoginProfiles", testLoginProfiles},
		{"MFADevices", testMFADevices},
		{"MFAStepConcurrent", testMFAStepConcurrent},
		{"ConsoleSessions", testConsoleSessions},
		{"ConsoleSessionsEnd", testConsoleSessionsEnd},
		{"SignInFailures", testSignInFailures},
		{"DeleteUserConsoleConflicts", testDeleteUserConsoleConflicts},
		{"Recordings", testRecordings},
		{"RecordingsList", testRecordingsList},
		{"VPCs", testVPCs},
		{"Subnets", testSubnets},
		{"DeleteSubnetConflicts", testDeleteSubnetConflicts},
		{"Instances", testInstances},
		{"Tags", testTags},
		{"TagsUnknownResource", testTagsUnknownResource},
		{"DeleteTagsAll", testDeleteTagsAll},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"Activations", testActivations},
		{"RegisterInstance", testRegisterInstance},
		{"RegisterInstanceExpired", testRegisterInstanceExpired},
		{"RegisterInstanceConcurrent", testRegisterInstanceConcurrent},
		{"UpdateInstanceFacts", testUpdateInstanceFacts},
		{"SetInstanceState", testSetInstanceState},
		{"InstanceReadsFollowWrites", testInstanceReadsFollowWrites},
		{"StopSilentInstances", testStopSilentInstances},
		{"Endpoints", testEndpoints},
		{"EndpointCreateConflicts", testEndpointCreateConflicts},
		{"EndpointSettings", testEndpointSettings},
		{"LiveTunnels", testLiveTunnels},
		{"LiveTunnelsConcurrent", testLiveTunnelsConcurrent},
		{"JoinEndpoint", testJoinEndpoint},
		{"DeleteEndpoint", testDeleteEndpoint},
		{"AuditAppend", testAuditAppend},
		{"AuditChainConcurrent", testAuditChainConcurrent},
		{"AuditCancelled", testAuditCancelled},
		{"AuditLookupFilters", testAuditLookupFilters},
		{"AuditLookupLimits", testAuditLookupLimits},
		{"AuditLookupPaging", testAuditLookupPaging},
		{"AuditScan", testAuditScan},
		{"AuditDigests", testAuditDigests},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// wantKind fails the test unless err is a *postern.Error of kind whose
// message contains every one of names.
func wantKind(t *testing.T, err error, kind postern.Kind, what string, names ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, kind)
		return
	}
	if got := postern.KindOf(err); got != kind {
		t.Errorf("%s: error %q is %v, want %v", what, err, got, kind)
		return
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("%s: error %q does not name %q", what, err, n)
		}
	}
}

// ok fails the test now when err is not nil.
func ok(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// sameTime reports a difference between two instants.
func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %s, want %s", what, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

// sameTags compares tag lists as sets, after sorting by key.
func sameTags(t *testing.T, what string, got, want []postern.Tag) {
	t.Helper()
	g, w := sortedTags(got), sortedTags(want)
	if !slices.Equal(g, w) {
		t.Errorf("%s tags = %v, want %v", what, g, w)
	}
}

func sortedTags(tags []postern.Tag) []postern.Tag {
	out := slices.Clone(tags)
	slices.SortFunc(out, func(a, b postern.Tag) int { return strings.Compare(a.Key, b.Key) })
	if out == nil {
		out = []postern.Tag{}
	}
	return out
}

// stamp is a time with nanoseconds in a zone other than UTC, so that a
// store that drops either shows it.
func stamp(offsetSeconds int) time.Time {
	zone := time.FixedZone("UTC+5:30", 5*3600+30*60)
	return time.Date(2026, 11, 2, 15, 4, 5, 123456789, zone).Add(time.Duration(offsetSeconds) * time.Second)
}

func strPtr(s string) *string { return &s }

func testPing(t *testing.T, s postern.Store) {
	ok(t, s.Ping(t.Context()), "Ping")
}

func testMeta(t *testing.T, s postern.Store) {
	ctx := t.Context()
	_, err := s.GetMeta(ctx, "account_id")
	wantKind(t, err, postern.KindNotFound, "GetMeta of an unset key", "account_id")

	got, err := s.PutMetaIfAbsent(ctx, "account_id", "123456789012")
	ok(t, err, "PutMetaIfAbsent")
	if got != "123456789012" {
		t.Errorf("PutMetaIfAbsent on an unset key = %q, want the new value", got)
	}
	got, err = s.PutMetaIfAbsent(ctx, "account_id", "999999999999")
	ok(t, err, "PutMetaIfAbsent again")
	if got != "123456789012" {
		t.Errorf("PutMetaIfAbsent on a set key = %q, want the value already stored", got)
	}
	got, err = s.GetMeta(ctx, "account_id")
	ok(t, err, "GetMeta")
	if got != "123456789012" {
		t.Errorf("GetMeta = %q, want the first value", got)
	}
	// Keys are independent, and the empty value is a value.
	got, err = s.PutMetaIfAbsent(ctx, "empty", "")
	ok(t, err, "PutMetaIfAbsent of an empty value")
	if got != "" {
		t.Errorf("PutMetaIfAbsent(empty) = %q", got)
	}
	got, err = s.PutMetaIfAbsent(ctx, "empty", "later")
	ok(t, err, "PutMetaIfAbsent over an empty value")
	if got != "" {
		t.Errorf("an empty value was replaced by %q", got)
	}
}

func testMetaConcurrent(t *testing.T, s postern.Store) {
	ctx := t.Context()
	const n = 20
	results := make(chan string, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			v, err := s.PutMetaIfAbsent(ctx, "race", string(rune('a'+i)))
			results <- v
			errs <- err
		}()
	}
	var first string
	for i := range n {
		ok(t, <-errs, "concurrent PutMetaIfAbsent")
		v := <-results
		if i == 0 {
			first = v
		} else if v != first {
			t.Fatalf("concurrent PutMetaIfAbsent returned %q and %q: both think they won", first, v)
		}
	}
	got, err := s.GetMeta(ctx, "race")
	ok(t, err, "GetMeta")
	if got != first {
		t.Errorf("GetMeta = %q, every caller was told %q", got, first)
	}
}
