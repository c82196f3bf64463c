package authority

import (
	"context"
	"errors"
	"net/netip"
	"strings"

	"github.com/postern-dev/postern"

	"github.com/postern-dev/postern/valid"
)

// Limits on tags, as EC2 has them.
const (
	maxTagsPerResource = 50
	maxTagKey          = 128
	maxTagValue        = 256
)

// resourceKind describes one EC2 id prefix: its ids' shape and error codes.
type resourceKind struct {
	noun     string // as EC2 words it in messages
	arnType  string
	prefix   string // e.g. "vpc-"
	min, max int    // hexadecimal digits after the prefix: 8 (older ids) to 17
	code     string // e.g. "InvalidVpcID"
}

// validID reports whether id has the kind's shape.
func (k resourceKind) validID(id string) bool { return valid.HexID(id, k.prefix, k.min, k.max) }

var (
	instanceKind = resourceKind{"instance", "instance", "i-", 8, 17, "InvalidInstanceID"}
	vpcKind      = resourceKind{"vpc", "vpc", "vpc-", 8, 17, "InvalidVpcID"}
	subnetKind   = resourceKind{"subnet", "subnet", "subnet-", 8, 17, "InvalidSubnetID"}
)

// kindOfID returns the resource kind an id's prefix names.
func kindOfID(id string) (resourceKind, bool) {
	switch {
	case strings.HasPrefix(id, "i-"):
		return instanceKind, true
	case strings.HasPrefix(id, "vpc-"):
		return vpcKind, true
	case strings.HasPrefix(id, "subnet-"):
		return subnetKind, true
	case strings.HasPrefix(id, "eice-"):
		return endpointKind, true
	}
	return resourceKind{}, false
}

// checkIDs validates ids of one kind, answering EC2's ".Malformed" code.
func checkIDs(k resourceKind, ids []string) error {
	for _, id := range ids {
		if !k.validID(id) {
			return postern.CodedErrorf(postern.KindInvalid, k.code+".Malformed", "Invalid id: %q (expecting %q followed by 17 hexadecimal digits)", id, k.prefix)
		}
	}
	return nil
}

// notFound re-codes a store's KindNotFound error with EC2's code for k.
func notFound(err error, k resourceKind) error {
	var e *postern.Error
	if errors.As(err, &e) && e.Kind == postern.KindNotFound {
		return &postern.Error{Kind: postern.KindNotFound, Code: k.code + ".NotFound", Message: e.Message, Err: e.Err}
	}
	return err
}

// ResourceARN returns the ARN of an EC2 resource id (i-, vpc-, subnet-,
// eice-).
func (a *Authority) ResourceARN(id string) string {
	k, ok := kindOfID(id)
	if !ok {
		return id
	}
	return a.EC2ARN(k.arnType, id)
}

// ParsePrefix parses an IPv4 or IPv6 CIDR for field, requiring it to be
// in canonical form (no host bits set) and its length within [min4,max4]
// for IPv4 or [min6,max6] for IPv6.
func ParsePrefix(field, s string, min4, max4, min6, max6 int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%s) for parameter %s is invalid. This is not a valid CIDR block.", s, field)
	}
	if p.Masked() != p {
		return netip.Prefix{}, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%s) for parameter %s is invalid. Host bits are set; did you mean %s?", s, field, p.Masked())
	}
	lo, hi := min4, max4
	if p.Addr().Is6() {
		lo, hi = min6, max6
	}
	if p.Bits() < lo || p.Bits() > hi {
		return netip.Prefix{}, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value (%s) for parameter %s is invalid. The prefix length must be between /%d and /%d.", s, field, lo, hi)
	}
	return p, nil
}

// ValidateTags checks tags to be set on a resource.
func ValidateTags(tags []postern.Tag) error {
	if len(tags) > maxTagsPerResource {
		return postern.CodedErrorf(postern.KindInvalid, "TagLimitExceeded", "At most %d tags may be set at once, got %d", maxTagsPerResource, len(tags))
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		switch {
		case t.Key == "":
			return postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Tag keys must not be empty")
		case len(t.Key) > maxTagKey:
			return postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Tag key %q exceeds %d characters", t.Key[:32]+"…", maxTagKey)
		case len(t.Value) > maxTagValue:
			return postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Value of tag %q exceeds %d characters", t.Key, maxTagValue)
		case strings.HasPrefix(strings.ToLower(t.Key), "aws:"):
			return postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved: %q", t.Key)
		case seen[t.Key]:
			return postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "Tag key %q is given twice", t.Key)
		}
		seen[t.Key] = true
	}
	return nil
}

// CreateVPC declares a network.
func (a *Authority) CreateVPC(ctx context.Context, cidr string, tags []postern.Tag) (*postern.VPC, error) {
	p, err := ParsePrefix("CidrBlock", cidr, 8, 28, 32, 64)
	if err != nil {
		return nil, err
	}
	if err := ValidateTags(tags); err != nil {
		return nil, err
	}
	v := &postern.VPC{ID: NewResourceID("vpc"), CIDR: p.String(), State: "available", Tags: tags, CreatedAt: a.now().UTC()}
	if err := a.store.CreateVPC(ctx, v); err != nil {
		return nil, err
	}
	return v, nil
}

// DeleteVPC deletes a VPC with no subnets.
func (a *Authority) DeleteVPC(ctx context.Context, id string) error {
	if err := checkIDs(vpcKind, []string{id}); err != nil {
		return err
	}
	err := a.store.DeleteVPC(ctx, id)
	if postern.IsKind(err, postern.KindConflict) {
		return postern.CodedErrorf(postern.KindConflict, "DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
	}
	return notFound(err, vpcKind)
}

// CreateSubnet declares a prefix inside a VPC. It must lie within the VPC's
// CIDR and overlap no other subnet of that VPC.
func (a *Authority) CreateSubnet(ctx context.Context, vpcID, cidr, az string, tags []postern.Tag) (*postern.Subnet, error) {
	if err := checkIDs(vpcKind, []string{vpcID}); err != nil {
		return nil, err
	}
	p, err := ParsePrefix("CidrBlock", cidr, 8, 28, 32, 64)
	if err != nil {
		return nil, err
	}
	if err := ValidateTags(tags); err != nil {
		return nil, err
	}
	v, err := a.store.GetVPC(ctx, vpcID)
	if err != nil {
		return nil, notFound(err, vpcKind)
	}
	vp := netip.MustParsePrefix(v.CIDR)
	if vp.Addr().Is4() != p.Addr().Is4() || !vp.Contains(p.Addr()) || p.Bits() < vp.Bits() {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidSubnet.Range", "The CIDR '%s' is invalid: it is not inside VPC %s (%s).", cidr, vpcID, v.CIDR)
	}
	subnets, err := a.store.ListSubnets(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, s := range subnets {
		if s.VPCID == vpcID && netip.MustParsePrefix(s.CIDR).Overlaps(p) {
			return nil, postern.CodedErrorf(postern.KindConflict, "InvalidSubnet.Conflict", "The CIDR '%s' conflicts with another subnet (%s, %s).", cidr, s.ID, s.CIDR)
		}
	}
	if az == "" {
		az = a.cfg.Region + "a"
	}
	s := &postern.Subnet{ID: NewResourceID("subnet"), VPCID: vpcID, CIDR: p.String(), AvailabilityZone: az, State: "available", Tags: tags, CreatedAt: a.now().UTC()}
	if err := a.store.CreateSubnet(ctx, s); err != nil {
		return nil, notFound(err, vpcKind)
	}
	return s, nil
}

// DeleteSubnet deletes a subnet with no live instances.
func (a *Authority) DeleteSubnet(ctx context.Context, id string) error {
	if err := checkIDs(subnetKind, []string{id}); err != nil {
		return err
	}
	err := a.store.DeleteSubnet(ctx, id)
	if postern.IsKind(err, postern.KindConflict) {
		return postern.CodedErrorf(postern.KindConflict, "DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted.", id)
	}
	return notFound(err, subnetKind)
}

// DescribeVPCs returns the VPCs with the given ids (all when empty) that
// pass every filter.
func (a *Authority) DescribeVPCs(ctx context.Context, ids []string, filters []postern.Filter) ([]postern.VPC, error) {
	if err := checkIDs(vpcKind, ids); err != nil {
		return nil, err
	}
	m, err := compileFilters(filters, map[string]fieldFunc[postern.VPC]{
		"vpc-id":                            func(v *postern.VPC) []string { return []string{v.ID} },
		"cidr":                              func(v *postern.VPC) []string { return []string{v.CIDR} },
		"cidr-block":                        func(v *postern.VPC) []string { return []string{v.CIDR} },
		"cidr-block-association.cidr-block": func(v *postern.VPC) []string { return []string{v.CIDR} },
		"state":                             func(v *postern.VPC) []string { return []string{v.State} },
		"owner-id":                          func(*postern.VPC) []string { return []string{a.cfg.Account} },
		"is-default":                        func(*postern.VPC) []string { return []string{"false"} },
	}, func(v *postern.VPC) []postern.Tag { return v.Tags })
	if err != nil {
		return nil, err
	}
	all, err := a.store.ListVPCs(ctx, ids)
	if err != nil {
		return nil, notFound(err, vpcKind)
	}
	return m.keep(all), nil
}

// DescribeSubnets returns the subnets with the given ids that pass filters.
func (a *Authority) DescribeSubnets(ctx context.Context, ids []string, filters []postern.Filter) ([]postern.Subnet, error) {
	if err := checkIDs(subnetKind, ids); err != nil {
		return nil, err
	}
	m, err := compileFilters(filters, map[string]fieldFunc[postern.Subnet]{
		"subnet-id":         func(s *postern.Subnet) []string { return []string{s.ID} },
		"vpc-id":            func(s *postern.Subnet) []string { return []string{s.VPCID} },
		"cidr":              func(s *postern.Subnet) []string { return []string{s.CIDR} },
		"cidr-block":        func(s *postern.Subnet) []string { return []string{s.CIDR} },
		"cidrBlock":         func(s *postern.Subnet) []string { return []string{s.CIDR} },
		"state":             func(s *postern.Subnet) []string { return []string{s.State} },
		"availability-zone": func(s *postern.Subnet) []string { return []string{s.AvailabilityZone} },
		"owner-id":          func(*postern.Subnet) []string { return []string{a.cfg.Account} },
	}, func(s *postern.Subnet) []postern.Tag { return s.Tags })
	if err != nil {
		return nil, err
	}
	all, err := a.store.ListSubnets(ctx, ids)
	if err != nil {
		return nil, notFound(err, subnetKind)
	}
	return m.keep(all), nil
}

// DescribeInstances returns the instances with the given ids that pass
// filters.
func (a *Authority) DescribeInstances(ctx context.Context, ids []string, filters []postern.Filter) ([]postern.Instance, error) {
	if err := checkIDs(instanceKind, ids); err != nil {
		return nil, err
	}
	m, err := compileFilters(filters, map[string]fieldFunc[postern.Instance]{
		"instance-id":         func(i *postern.Instance) []string { return []string{i.ID} },
		"instance-state-name": func(i *postern.Instance) []string { return []string{i.State} },
		"private-ip-address":  func(i *postern.Instance) []string { return []string{i.PrivateIP} },
		"ip-address":          func(i *postern.Instance) []string { return []string{i.PublicIP} },
		"vpc-id":              func(i *postern.Instance) []string { return []string{i.VPCID} },
		"subnet-id":           func(i *postern.Instance) []string { return []string{i.SubnetID} },
		"private-dns-name":    func(i *postern.Instance) []string { return []string{i.Hostname} },
		"platform-details":    func(i *postern.Instance) []string { return []string{i.Platform} },
		"owner-id":            func(*postern.Instance) []string { return []string{a.cfg.Account} },
	}, func(i *postern.Instance) []postern.Tag { return i.Tags })
	if err != nil {
		return nil, err
	}
	all, err := a.store.ListInstances(ctx, ids)
	if err != nil {
		return nil, notFound(err, instanceKind)
	}
	return m.keep(all), nil
}

// CheckResourceIDs validates a mixed list of resource ids (for tagging).
func CheckResourceIDs(ids []string) error {
	if len(ids) == 0 {
		return postern.CodedErrorf(postern.KindInvalid, "MissingParameter", "The request must contain the parameter ResourceId")
	}
	for _, id := range ids {
		k, ok := kindOfID(id)
		if !ok {
			return postern.CodedErrorf(postern.KindInvalid, "InvalidID", "The ID '%s' is not valid: Postern tags instances (i-), VPCs (vpc-), subnets (subnet-) and Instance Connect Endpoints (eice-)", id)
		}
		if err := checkIDs(k, []string{id}); err != nil {
			return err
		}
	}
	return nil
}

// ResourceTags returns the current tags of a resource (for policy keys).
func (a *Authority) ResourceTags(ctx context.Context, id string) ([]postern.Tag, error) {
	k, ok := kindOfID(id)
	if !ok {
		return nil, postern.Invalidf("unknown resource id %q", id)
	}
	switch k {
	case instanceKind:
		i, err := a.store.GetInstance(ctx, id)
		if err != nil {
			return nil, notFound(err, k)
		}
		return i.Tags, nil
	case vpcKind:
		v, err := a.store.GetVPC(ctx, id)
		if err != nil {
			return nil, notFound(err, k)
		}
		return v.Tags, nil
	case endpointKind:
		e, err := a.store.GetEndpoint(ctx, id)
		if err != nil {
			return nil, notFound(err, k)
		}
		return e.Tags, nil
	default:
		s, err := a.store.GetSubnet(ctx, id)
		if err != nil {
			return nil, notFound(err, k)
		}
		return s.Tags, nil
	}
}

// CreateTags adds or overwrites tags on resources; all or nothing.
func (a *Authority) CreateTags(ctx context.Context, ids []string, tags []postern.Tag) error {
	if err := CheckResourceIDs(ids); err != nil {
		return err
	}
	if len(tags) == 0 {
		return postern.CodedErrorf(postern.KindInvalid, "MissingParameter", "The request must contain the parameter Tag")
	}
	if err := ValidateTags(tags); err != nil {
		return err
	}
	return a.recodeTagErr(a.store.CreateTags(ctx, ids, tags), ids)
}

// DeleteTags removes tags from resources; all or nothing.
func (a *Authority) DeleteTags(ctx context.Context, ids []string, sel []postern.TagSelector) error {
	if err := CheckResourceIDs(ids); err != nil {
		return err
	}
	return a.recodeTagErr(a.store.DeleteTags(ctx, ids, sel), ids)
}

func (a *Authority) recodeTagErr(err error, ids []string) error {
	if !postern.IsKind(err, postern.KindNotFound) {
		return err
	}
	// Name the right code for the first missing resource.
	for _, id := range ids {
		if strings.Contains(err.Error(), id) {
			k, _ := kindOfID(id)
			return notFound(err, k)
		}
	}
	return err
}

// fieldFunc extracts the values a filter name compares against.
type fieldFunc[T any] func(*T) []string

type matcher[T any] struct {
	tests []func(*T) bool
}

func (m matcher[T]) keep(all []T) []T {
	out := all[:0]
	for i := range all {
		ok := true
		for _, t := range m.tests {
			if !t(&all[i]) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, all[i])
		}
	}
	return out
}

// compileFilters turns EC2 filters into predicates: filters AND together,
// the values of one filter OR together, and values may use * and ?.
// tag:KEY, tag-key and tag-value work for every resource type.
func compileFilters[T any](filters []postern.Filter, fields map[string]fieldFunc[T], tagsOf func(*T) []postern.Tag) (matcher[T], error) {
	var m matcher[T]
	for _, f := range filters {
		if len(f.Values) == 0 {
			return m, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "The filter '%s' has no values", f.Name)
		}
		values := f.Values
		var get fieldFunc[T]
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			key := strings.TrimPrefix(f.Name, "tag:")
			get = func(x *T) []string {
				for _, t := range tagsOf(x) {
					if t.Key == key {
						return []string{t.Value}
					}
				}
				return nil
			}
		case f.Name == "tag-key":
			get = func(x *T) []string { return tagKeys(tagsOf(x)) }
		case f.Name == "tag-value":
			get = func(x *T) []string { return tagValues(tagsOf(x)) }
		default:
			var ok bool
			if get, ok = fields[f.Name]; !ok {
				return m, postern.CodedErrorf(postern.KindInvalid, "InvalidParameterValue", "The filter '%s' is invalid", f.Name)
			}
		}
		m.tests = append(m.tests, func(x *T) bool {
			for _, have := range get(x) {
				for _, want := range values {
					if Glob(want, have) {
						return true
					}
				}
			}
			return false
		})
	}
	return m, nil
}

func tagKeys(tags []postern.Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Key
	}
	return out
}

func tagValues(tags []postern.Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Value
	}
	return out
}

// Glob reports whether s matches pattern, where * matches any run of
// characters (including none) and ? exactly one; nothing else is special.
func Glob(pattern, s string) bool {
	// Iterative matcher with single-star backtracking: linear in practice.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
