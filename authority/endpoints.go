package authority

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/valid"
)

// Endpoint limits.
const (
	maxEndpointPorts          = 32
	maxEndpointConnections    = 10000
	MaxEndpointTunnelDuration = 3600 * time.Second
	maxSecurityGroups         = 16
	maxClientToken            = 64
	// MaxEndpointPage bounds DescribeInstanceConnectEndpoints' MaxResults,
	// as EC2 does.
	MaxEndpointPage = 50
)

var endpointKind = resourceKind{"Instance Connect Endpoint", "instance-connect-endpoint", "eice-", 17, 17, "InvalidInstanceConnectEndpointId"}

// EndpointInput is what CreateInstanceConnectEndpoint accepts. Zero
// settings take the defaults.
type EndpointInput struct {
	SubnetID         string
	SecurityGroupIDs []string
	PreserveClientIP bool
	ClientToken      string
	IPAddressType    string // "", ipv4, dualstack or ipv6
	Tags             []postern.Tag
	Settings         postern.EndpointSettings
}

// EndpointChange is what ModifyInstanceConnectEndpoint accepts: nil
// fields stay as they are.
type EndpointChange struct {
	SecurityGroupIDs  []string
	PreserveClientIP  *bool
	IPAddressType     string
	AllowedPorts      []int
	MaxConnections    *int
	MaxTunnelDuration *time.Duration
}

func invalidValue(format string, args ...any) error {
	return postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", format, args...)
}

// errPreserveClientIP explains why PreserveClientIp=true is refused.
func errPreserveClientIP() error {
	return invalidValue("PreserveClientIp=true is not supported: a Postern endpoint connects to instances from its own address " +
		"and cannot present the client's source address; leave PreserveClientIp unset or false")
}

func checkIPAddressType(t string) error {
	switch t {
	case "", "ipv4", "dualstack", "ipv6":
		return nil
	}
	return invalidValue("Value (%s) for parameter IpAddressType is invalid. Valid values: ipv4, dualstack, ipv6.", t)
}

func checkSecurityGroups(ids []string) error {
	if len(ids) > maxSecurityGroups {
		return invalidValue("At most %d security groups may be given, got %d", maxSecurityGroups, len(ids))
	}
	for _, id := range ids {
		if !valid.HexID(id, "sg-", 8, 17) {
			return postern.CodedErrorf(postern.KindInvalid, "InvalidGroupId.Malformed", "Invalid id: %q (expecting \"sg-…\")", id)
		}
	}
	return nil
}

// resolveSettings fills defaults into s and validates it; ports come back
// sorted.
func resolveSettings(s postern.EndpointSettings) (postern.EndpointSettings, error) {
	if s.AllowedPorts == nil {
		s.AllowedPorts = postern.DefaultEndpointPorts()
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = postern.DefaultEndpointMaxConnections
	}
	if s.MaxTunnelDuration == 0 {
		s.MaxTunnelDuration = postern.DefaultEndpointMaxTunnelDuration
	}
	return s, checkSettings(s)
}

func checkSettings(s postern.EndpointSettings) error {
	if len(s.AllowedPorts) == 0 || len(s.AllowedPorts) > maxEndpointPorts {
		return invalidValue("An endpoint allows between 1 and %d ports, got %d", maxEndpointPorts, len(s.AllowedPorts))
	}
	seen := map[int]bool{}
	for _, p := range s.AllowedPorts {
		if p < 1 || p > 65535 {
			return invalidValue("Port %d is not between 1 and 65535", p)
		}
		if seen[p] {
			return invalidValue("Port %d is given twice", p)
		}
		seen[p] = true
	}
	slices.Sort(s.AllowedPorts)
	if s.MaxConnections < 1 || s.MaxConnections > maxEndpointConnections {
		return invalidValue("MaxConnections must be between 1 and %d, got %d", maxEndpointConnections, s.MaxConnections)
	}
	if s.MaxTunnelDuration < time.Second || s.MaxTunnelDuration > MaxEndpointTunnelDuration || s.MaxTunnelDuration%time.Second != 0 {
		return invalidValue("MaxTunnelDuration must be a whole number of seconds between 1 and %d, got %v",
			int(MaxEndpointTunnelDuration/time.Second), s.MaxTunnelDuration.Seconds())
	}
	return nil
}

// requestDigest fingerprints the parameters of a create request, so that
// a retry with the same ClientToken can be told from a different request.
func requestDigest(in EndpointInput) []byte {
	groups := slices.Clone(in.SecurityGroupIDs)
	slices.Sort(groups)
	tags := slices.Clone(in.Tags)
	slices.SortFunc(tags, func(a, b postern.Tag) int { return strings.Compare(a.Key, b.Key) })
	b, _ := json.Marshal(struct {
		Subnet   string
		Groups   []string
		Preserve bool
		IPType   string
		Tags     []postern.Tag
		Ports    []int
		MaxConns int
		MaxSecs  int64
	}{in.SubnetID, groups, in.PreserveClientIP, in.IPAddressType, tags, in.Settings.AllowedPorts,
		in.Settings.MaxConnections, int64(in.Settings.MaxTunnelDuration / time.Second)})
	sum := sha256.Sum256(b)
	return sum[:]
}

func mismatch(token string) error {
	return postern.CodedErrorf(postern.KindConflict, "IdempotentParameterMismatch",
		"The client token %q was used already with different parameters", token)
}

// CreateEndpoint creates an Instance Connect Endpoint in a subnet and
// returns it with its join credential, which is shown this once and kept
// only as a hash. A retry with the same ClientToken and parameters
// returns the endpoint it created, with no credential (created is false).
func (a *Authority) CreateEndpoint(ctx context.Context, in EndpointInput, caller string) (e *postern.Endpoint, credential string, created bool, err error) {
	if err := checkIDs(subnetKind, []string{in.SubnetID}); err != nil {
		return nil, "", false, err
	}
	if in.PreserveClientIP {
		return nil, "", false, errPreserveClientIP()
	}
	if err := checkIPAddressType(in.IPAddressType); err != nil {
		return nil, "", false, err
	}
	if err := checkSecurityGroups(in.SecurityGroupIDs); err != nil {
		return nil, "", false, err
	}
	if len(in.ClientToken) > maxClientToken {
		return nil, "", false, invalidValue("ClientToken must be at most %d characters", maxClientToken)
	}
	if err := ValidateTags(in.Tags); err != nil {
		return nil, "", false, err
	}
	if in.Settings, err = resolveSettings(in.Settings); err != nil {
		return nil, "", false, err
	}
	digest := requestDigest(in)
	if in.ClientToken != "" {
		if prev, err := a.endpointByToken(ctx, in.ClientToken, digest); prev != nil || err != nil {
			return prev, "", false, err
		}
	}
	sn, err := a.store.GetSubnet(ctx, in.SubnetID)
	if err != nil {
		return nil, "", false, notFound(err, subnetKind)
	}
	id := NewResourceID("eice")
	var secret [20]byte
	mustRead(secret[:])
	credential = id + "." + strings.ToLower(base32.StdEncoding.EncodeToString(secret[:]))
	sum := sha256.Sum256([]byte(credential))
	e = &postern.Endpoint{
		ID: id, SubnetID: sn.ID, VPCID: sn.VPCID, AvailabilityZone: sn.AvailabilityZone,
		State:            postern.EndpointCreateInProgress,
		StateMessage:     "Waiting for the endpoint to join: run 'postern endpoint run' with its credential",
		SecurityGroupIDs: in.SecurityGroupIDs, EndpointSettings: in.Settings,
		ClientToken: in.ClientToken, RequestDigest: digest, CredentialHash: sum[:],
		Tags: in.Tags, CreatedAt: a.now().UTC(), CreatedBy: caller,
	}
	err = a.store.CreateEndpoint(ctx, e)
	switch {
	case err == nil:
		return e, credential, true, nil
	case postern.IsKind(err, postern.KindExists) && in.ClientToken != "":
		// A concurrent request with the same token won.
		prev, perr := a.endpointByToken(ctx, in.ClientToken, digest)
		if prev != nil || perr != nil {
			return prev, "", false, perr
		}
		return nil, "", false, err
	case postern.IsKind(err, postern.KindConflict):
		return nil, "", false, postern.CodedErrorf(postern.KindLimit, "ResourceLimitExceeded",
			"%s; a subnet holds at most one Instance Connect Endpoint", capitalize(err))
	}
	return nil, "", false, notFound(err, subnetKind)
}

// capitalize returns a store error's message with a capital first letter,
// to stand as a sentence of its own.
func capitalize(err error) string {
	msg := err.Error()
	var e *postern.Error
	if errors.As(err, &e) && e.Message != "" {
		msg = e.Message
	}
	if msg == "" {
		return msg
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// endpointByToken returns the endpoint created with token, nil when there
// is none, or IdempotentParameterMismatch when its request differed.
func (a *Authority) endpointByToken(ctx context.Context, token string, digest []byte) (*postern.Endpoint, error) {
	all, err := a.store.ListEndpoints(ctx, nil)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].ClientToken == token {
			if subtle.ConstantTimeCompare(all[i].RequestDigest, digest) != 1 {
				return nil, mismatch(token)
			}
			return &all[i], nil
		}
	}
	return nil, nil
}

// DescribeEndpoints returns one page of the endpoints with the given ids
// (all when empty) that pass every filter, by id, and the token of the
// next page ("" on the last). maxResults 0 means all.
func (a *Authority) DescribeEndpoints(ctx context.Context, ids []string, filters []postern.Filter, maxResults int, nextToken string) ([]postern.Endpoint, string, error) {
	if err := checkIDs(endpointKind, ids); err != nil {
		return nil, "", err
	}
	if maxResults != 0 && (maxResults < 1 || maxResults > MaxEndpointPage) {
		return nil, "", invalidValue("Value (%d) for parameter MaxResults is invalid. It must be between 1 and %d.", maxResults, MaxEndpointPage)
	}
	after, err := parsePageToken(nextToken)
	if err != nil {
		return nil, "", err
	}
	m, err := compileFilters(filters, map[string]fieldFunc[postern.Endpoint]{
		"instance-connect-endpoint-id": func(e *postern.Endpoint) []string { return []string{e.ID} },
		"state":                        func(e *postern.Endpoint) []string { return []string{e.State} },
		"subnet-id":                    func(e *postern.Endpoint) []string { return []string{e.SubnetID} },
		"vpc-id":                       func(e *postern.Endpoint) []string { return []string{e.VPCID} },
		"availability-zone":            func(e *postern.Endpoint) []string { return []string{e.AvailabilityZone} },
		"owner-id":                     func(*postern.Endpoint) []string { return []string{a.cfg.Account} },
	}, func(e *postern.Endpoint) []postern.Tag { return e.Tags })
	if err != nil {
		return nil, "", err
	}
	all, err := a.store.ListEndpoints(ctx, ids)
	if err != nil {
		return nil, "", notFound(err, endpointKind)
	}
	kept := m.keep(all)
	if after != "" {
		i, _ := slices.BinarySearchFunc(kept, after, func(e postern.Endpoint, id string) int { return strings.Compare(e.ID, id) })
		for i < len(kept) && kept[i].ID <= after {
			i++
		}
		kept = kept[i:]
	}
	if maxResults == 0 || len(kept) <= maxResults {
		return kept, "", nil
	}
	page := kept[:maxResults]
	return page, pageToken(page[len(page)-1].ID), nil
}

// Page tokens are opaque to callers: a version and the last id returned,
// so that pages stay consistent while endpoints come and go.
const pageTokenPrefix = "eice-page-v1:"

func pageToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + lastID))
}

func parsePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	id, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	if err != nil || !ok || !endpointKind.validID(id) {
		return "", postern.CodedErrorf(postern.KindInvalid, "InvalidPaginationToken", "The NextToken is not valid: pass back the NextToken of a previous response unchanged")
	}
	return id, nil
}

// GetEndpoint returns one endpoint.
func (a *Authority) GetEndpoint(ctx context.Context, id string) (*postern.Endpoint, error) {
	if err := checkIDs(endpointKind, []string{id}); err != nil {
		return nil, err
	}
	e, err := a.store.GetEndpoint(ctx, id)
	return e, notFound(err, endpointKind)
}

func incorrectState(err error) error {
	if postern.IsKind(err, postern.KindConflict) {
		return postern.CodedErrorf(postern.KindConflict, "IncorrectState", "%s", capitalize(err))
	}
	return notFound(err, endpointKind)
}

// ModifyEndpoint changes an endpoint's settings and returns it as it is
// afterwards.
func (a *Authority) ModifyEndpoint(ctx context.Context, id string, ch EndpointChange) (*postern.Endpoint, error) {
	if err := checkIDs(endpointKind, []string{id}); err != nil {
		return nil, err
	}
	if ch.PreserveClientIP != nil && *ch.PreserveClientIP {
		return nil, errPreserveClientIP()
	}
	if err := checkIPAddressType(ch.IPAddressType); err != nil {
		return nil, err
	}
	if err := checkSecurityGroups(ch.SecurityGroupIDs); err != nil {
		return nil, err
	}
	e, err := a.store.GetEndpoint(ctx, id)
	if err != nil {
		return nil, notFound(err, endpointKind)
	}
	if ch.SecurityGroupIDs != nil && !sameSet(ch.SecurityGroupIDs, e.SecurityGroupIDs) {
		return nil, invalidValue("Postern cannot change an endpoint's security groups (it enforces none); create a new endpoint to record others")
	}
	set := e.EndpointSettings
	if ch.AllowedPorts != nil {
		set.AllowedPorts = slices.Clone(ch.AllowedPorts)
	}
	if ch.MaxConnections != nil {
		set.MaxConnections = *ch.MaxConnections
	}
	if ch.MaxTunnelDuration != nil {
		set.MaxTunnelDuration = *ch.MaxTunnelDuration
	}
	if err := checkSettings(set); err != nil {
		return nil, err
	}
	if err := a.store.UpdateEndpointSettings(ctx, id, set); err != nil {
		return nil, incorrectState(err)
	}
	e.EndpointSettings = set
	a.notifyEndpoint(e)
	return e, nil
}

// OnEndpointChange registers f to hear of every endpoint whose settings
// changed or whose deletion began. Set it before serving.
func (a *Authority) OnEndpointChange(f func(*postern.Endpoint)) { a.endpointChanged = f }

func (a *Authority) notifyEndpoint(e *postern.Endpoint) {
	if a.endpointChanged != nil {
		a.endpointChanged(e)
	}
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// DeleteEndpoint starts deleting an endpoint: it refuses new tunnels at
// once, and its process closes live ones.
func (a *Authority) DeleteEndpoint(ctx context.Context, id string) (*postern.Endpoint, error) {
	if err := checkIDs(endpointKind, []string{id}); err != nil {
		return nil, err
	}
	e, err := a.store.DeleteEndpoint(ctx, id)
	if err != nil {
		return nil, incorrectState(err)
	}
	if e.State == postern.EndpointDeleteInProgress {
		a.notifyEndpoint(e)
	}
	return e, nil
}

// VerifyEndpointCredential returns the live endpoint a join credential
// belongs to. Any doubt is the same KindUnauthenticated error, so that a
// caller learns nothing about which part was wrong.
func (a *Authority) VerifyEndpointCredential(ctx context.Context, credential string) (*postern.Endpoint, error) {
	bad := postern.CodedErrorf(postern.KindUnauthenticated, "AuthFailure", "The endpoint credential is not valid")
	id, _, ok := strings.Cut(credential, ".")
	if !ok || !endpointKind.validID(id) {
		return nil, bad
	}
	e, err := a.store.GetEndpoint(ctx, id)
	if isNotFound(err) {
		return nil, bad
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(credential))
	if subtle.ConstantTimeCompare(sum[:], e.CredentialHash) != 1 {
		return nil, bad
	}
	if !e.Live() {
		return nil, postern.CodedErrorf(postern.KindConflict, "IncorrectState", "Instance Connect Endpoint %s is %s", id, e.State)
	}
	return e, nil
}

// JoinEndpoint verifies an endpoint process's credential and records its
// join: the first one completes the endpoint's creation. dnsName, when not
// empty, is where clients reach it from now on.
func (a *Authority) JoinEndpoint(ctx context.Context, credential, dnsName string) (*postern.Endpoint, error) {
	e, err := a.VerifyEndpointCredential(ctx, credential)
	if err != nil {
		return nil, err
	}
	if err := a.store.JoinEndpoint(ctx, e.ID, dnsName, a.now().UTC()); err != nil {
		return nil, incorrectState(err)
	}
	return a.store.GetEndpoint(ctx, e.ID)
}

// CompleteEndpointDeletion records that a deleted endpoint's process has
// closed its tunnels.
func (a *Authority) CompleteEndpointDeletion(ctx context.Context, id string) error {
	if err := checkIDs(endpointKind, []string{id}); err != nil {
		return err
	}
	return incorrectState(a.store.CompleteEndpointDeletion(ctx, id))
}

// LiveTunnels returns how many tunnels each endpoint carries now, across
// all of its processes (endpoints without any are absent).
func (a *Authority) LiveTunnels(ctx context.Context) (map[string]int, error) {
	return a.store.CountTunnels(ctx, time.Now().Add(-endpointproto.ProcessStale))
}
