package opentunnel

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestChooseRoute: the rule postern ssh and the console share, with the
// endpoint lookup left to the caller.
func TestChooseRoute(t *testing.T) {
	ctx := context.Background()
	candidates := []Endpoint{
		{ID: "eice-1", VpcID: "vpc-1", SubnetID: "subnet-1", State: "create-complete", DNSName: "ep1.example.test"},
		{ID: "eice-2", VpcID: "vpc-1", SubnetID: "subnet-2", State: "create-complete", DNSName: "ep2.example.test"},
		{ID: "eice-3", VpcID: "vpc-2", SubnetID: "subnet-3", State: "create-in-progress"},
		{ID: "eice-4", VpcID: "vpc-3", SubnetID: "subnet-4", State: "delete-complete", DNSName: "gone.example.test"},
	}
	lookups := 0
	find := func(_ context.Context, inst Instance) (Endpoint, error) {
		lookups++
		return PickEndpoint(inst, candidates)
	}
	public := Addresses{ID: "i-0a", PublicIP: "203.0.113.5", PrivateIP: "10.0.2.5", VpcID: "vpc-1", SubnetID: "subnet-2"}
	private := Addresses{ID: "i-0b", PrivateIP: "10.0.2.6", VpcID: "vpc-1", SubnetID: "subnet-9"}
	pending := Addresses{ID: "i-0c", PrivateIP: "10.9.0.6", VpcID: "vpc-2", SubnetID: "subnet-3"}
	deleted := Addresses{ID: "i-0d", PrivateIP: "10.8.0.6", VpcID: "vpc-3", SubnetID: "subnet-4"}
	nowhere := Addresses{ID: "i-0e", PrivateIP: "10.7.0.6"}
	for _, tc := range []struct {
		name     string
		a        Addresses
		connType string
		force    bool
		addr     string
		endpoint string
		err      string
	}{
		{name: "auto public", a: public, connType: "auto", addr: "203.0.113.5"},
		{name: "auto private, another subnet of the VPC", a: private, connType: "auto", addr: "10.0.2.6", endpoint: "eice-1"},
		{name: "auto public's subnet", a: public, connType: "eice", addr: "10.0.2.5", endpoint: "eice-2"},
		{name: "auto, the VPC's endpoint not ready", a: pending, connType: "auto", addr: "10.9.0.6"},
		{name: "auto, the VPC's endpoint deleted", a: deleted, connType: "auto", addr: "10.8.0.6"},
		{name: "auto, in no VPC", a: nowhere, connType: "auto", addr: "10.7.0.6"},
		{name: "direct", a: public, connType: "direct", addr: "203.0.113.5"},
		{name: "direct private", a: private, connType: "direct", addr: "10.0.2.6"},
		{name: "forced", a: public, connType: "auto", force: true, addr: "10.0.2.5", endpoint: "eice-2"},
		{name: "eice, none ready", a: pending, connType: "eice", err: "no Instance Connect Endpoint is available in vpc-2"},
		{name: "direct forced", a: private, connType: "direct", force: true, err: "cannot be used with a direct connection"},
		{name: "no address", a: Addresses{ID: "i-0f"}, connType: "auto", err: "reported no address"},
		{name: "eice without a private address", a: Addresses{ID: "i-0f", PublicIP: "203.0.113.9"}, connType: "eice", err: "no private address"},
		{name: "bad type", a: private, connType: "ssm", err: "not auto, direct or eice"},
	} {
		r, err := ChooseRoute(ctx, tc.a, tc.connType, tc.force, find)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: ChooseRoute = %+v, %v; want an error saying %q", tc.name, r, err, tc.err)
			}
			continue
		}
		ep := ""
		if r.Endpoint != nil {
			ep = r.Endpoint.ID
		}
		if err != nil || r.Addr != tc.addr || ep != tc.endpoint {
			t.Errorf("%s: ChooseRoute = %s via %q, %v; want %s via %q", tc.name, r.Addr, ep, err, tc.addr, tc.endpoint)
		}
	}

	// A public address needs no lookup; a lookup that fails otherwise
	// fails the choice, whatever the type.
	lookups = 0
	if _, err := ChooseRoute(ctx, public, "auto", false, find); err != nil || lookups != 0 {
		t.Errorf("auto with a public address: %v after %d lookups", err, lookups)
	}
	broken := errors.New("store unavailable")
	if _, err := ChooseRoute(ctx, private, "auto", false, func(context.Context, Instance) (Endpoint, error) {
		return Endpoint{}, broken
	}); !errors.Is(err, broken) {
		t.Errorf("auto with a failing lookup = %v, want it", err)
	}
}
