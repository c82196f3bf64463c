package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestEndpointCommands(t *testing.T) {
	e := startServer(t)
	vpcID, subnet := e.newSubnet("10.50.0.0/16", "10.50.1.0/24")

	type endpoint struct {
		InstanceConnectEndpointId, SubnetId, VpcId, State string
		SecurityGroupIds                                  []string
		AllowedPorts                                      []int
		MaxConnections, MaxTunnelDuration                 int
	}
	var created struct {
		InstanceConnectEndpoint endpoint
		JoinCredential          string
	}
	e.okJSON(&created, "endpoint", "create", "--subnet-id", subnet, "--port", "22", "--port", "5432",
		"--max-connections", "9", "--security-group-id", "sg-0123456789abcdef0", "--tag", "Name=edge", "--client-token", "cli-1")
	ep := created.InstanceConnectEndpoint
	id := ep.InstanceConnectEndpointId
	if !regexp.MustCompile(`^eice-[0-9a-f]{17}$`).MatchString(id) || ep.SubnetId != subnet || ep.VpcId != vpcID ||
		ep.State != "create-in-progress" || !slices.Equal(ep.AllowedPorts, []int{22, 5432}) || ep.MaxConnections != 9 ||
		ep.MaxTunnelDuration != 3600 || !slices.Equal(ep.SecurityGroupIds, []string{"sg-0123456789abcdef0"}) {
		t.Fatalf("endpoint create = %+v", created)
	}
	if !strings.HasPrefix(created.JoinCredential, id+".") {
		t.Errorf("endpoint create printed credential %q", created.JoinCredential)
	}
	e.secrets = append(e.secrets, created.JoinCredential)

	// The same client token: the same endpoint, and no credential again.
	out := e.ok("endpoint", "create", "--subnet-id", subnet, "--port", "22", "--port", "5432",
		"--max-connections", "9", "--security-group-id", "sg-0123456789abcdef0", "--tag", "Name=edge", "--client-token", "cli-1")
	if !strings.Contains(out, id) || strings.Contains(out, "JoinCredential:") || !strings.Contains(out, "created earlier") {
		t.Errorf("endpoint create retried printed:\n%s", out)
	}
	e.fails(1, []string{"IdempotentParameterMismatch"}, "endpoint", "create", "--subnet-id", subnet, "--client-token", "cli-1")
	e.fails(1, []string{"ResourceLimitExceeded", subnet, id}, "endpoint", "create", "--subnet-id", subnet)
	e.fails(1, []string{"InvalidSubnetID.NotFound"}, "endpoint", "create", "--subnet-id", "subnet-0123456789abcdef0")
	e.fails(2, []string{"--subnet-id is required"}, "endpoint", "create")

	out = e.ok("endpoint", "list")
	if rows := tableRows(out); len(rows) != 1 || rows[0][0] != id || rows[0][3] != "create-in-progress" ||
		rows[0][5] != "22,5432" || rows[0][6] != "9 conns, 3600s" || rows[0][7] != "Name=edge" {
		t.Errorf("endpoint list printed:\n%s", out)
	}

	var modified struct{ InstanceConnectEndpoint endpoint }
	e.okJSON(&modified, "endpoint", "modify", id, "--port", "22,3389", "--max-tunnel-duration", "600")
	if m := modified.InstanceConnectEndpoint; !slices.Equal(m.AllowedPorts, []int{22, 3389}) || m.MaxTunnelDuration != 600 || m.MaxConnections != 9 {
		t.Errorf("endpoint modify = %+v", m)
	}
	e.fails(1, []string{"InvalidParameterValue"}, "endpoint", "modify", id, "--max-tunnel-duration", "7200")
	e.fails(1, []string{"InvalidInstanceConnectEndpointId.Malformed"}, "endpoint", "modify", "eice-1", "--port", "22")
	e.fails(2, []string{"nothing to change"}, "endpoint", "modify", id)

	var list struct{ InstanceConnectEndpoints []endpoint }
	e.okJSON(&list, "endpoint", "list", "--filter", "state=create-in-progress", id)
	if len(list.InstanceConnectEndpoints) != 1 || list.InstanceConnectEndpoints[0].MaxTunnelDuration != 600 {
		t.Errorf("endpoint list --output json = %+v", list)
	}

	if out := e.ok("endpoint", "delete", id); !strings.Contains(out, "Deleting "+id) {
		t.Errorf("endpoint delete printed %q", out)
	}
	e.fails(1, []string{"IncorrectState"}, "endpoint", "delete", id)
	e.okJSON(&list, "endpoint", "list")
	if len(list.InstanceConnectEndpoints) != 1 || list.InstanceConnectEndpoints[0].State != "delete-complete" {
		t.Errorf("after delete, endpoint list = %+v", list)
	}
	e.noSecrets("the server log", e.logs.String())
}
