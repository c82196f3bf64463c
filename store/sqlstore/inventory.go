package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postern-dev/postern"
)

// resourceKind maps an id prefix to the table that holds such resources
// and the word messages use for them.
type resourceKind struct {
	prefix, table, noun string
}

var resourceKinds = []resourceKind{
	{"vpc-", "vpcs", "VPC"},
	{"subnet-", "subnets", "subnet"},
	{"i-", "instances", "instance"},
	{"eice-", "endpoints", "Instance Connect Endpoint"},
}

var (
	vpcKind      = resourceKinds[0]
	subnetKind   = resourceKinds[1]
	instanceKind = resourceKinds[2]
	endpointKind = resourceKinds[3]
)

func (k resourceKind) notFound(id string) error {
	return postern.NotFoundf("%s %s does not exist", k.noun, id)
}

func kindOfID(id string) (resourceKind, bool) {
	for _, k := range resourceKinds {
		if strings.HasPrefix(id, k.prefix) {
			return k, true
		}
	}
	return resourceKind{}, false
}

// checkResources reports the first id that names no existing resource.
func checkResources(ctx context.Context, q queryer, ids []string) error {
	for _, id := range ids {
		k, ok := kindOfID(id)
		if !ok {
			return postern.NotFoundf("resource %q does not exist", id)
		}
		found, err := exists(ctx, q, `SELECT 1 FROM `+k.table+` WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if !found {
			return k.notFound(id)
		}
	}
	return nil
}

func insertTags(ctx context.Context, tx *sql.Tx, id string, tags []postern.Tag) error {
	for _, t := range tags {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tags (resource_id, key, value) VALUES (?, ?, ?)
			ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value`, id, t.Key, t.Value); err != nil {
			return err
		}
	}
	return nil
}

// timeCol scans a nanosecond column (NULL is the zero time) into a
// time.Time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.Unix(0, v).UTC()
	default:
		return fmt.Errorf("time column holds %T", src)
	}
	return nil
}

// queryTagged runs query, whose rows are an entity's columns followed by a
// tag key and value from a LEFT JOIN on tags (NULL when it has none),
// ordered by entity id, and folds the tags into each entity.
func queryTagged[T any](ctx context.Context, q queryer, query string, args []any,
	dest func(*T) []any, id func(*T) string, tags func(*T) *[]postern.Tag) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var item T
		var key, value sql.NullString
		if err := rows.Scan(append(dest(&item), &key, &value)...); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || id(&out[n-1]) != id(&item) {
			out = append(out, item)
		}
		if key.Valid {
			last := &out[len(out)-1]
			*tags(last) = append(*tags(last), postern.Tag{Key: key.String, Value: value.String})
		}
	}
	return out, rows.Err()
}

// idFilter returns a WHERE clause selecting ids (all rows when empty) and
// its arguments; duplicates are dropped.
func idFilter(col string, ids []string) (string, []any) {
	if len(ids) == 0 {
		return "", nil
	}
	seen := make(map[string]bool, len(ids))
	var args []any
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			args = append(args, id)
		}
	}
	return ` WHERE ` + col + ` IN (?` + strings.Repeat(`, ?`, len(args)-1) + `)`, args
}

// firstMissing returns NotFound for the first of ids (in the caller's
// order) that is not among items.
func firstMissing[T any](k resourceKind, ids []string, items []T, id func(*T) string) error {
	if len(ids) == 0 {
		return nil
	}
	found := make(map[string]bool, len(items))
	for i := range items {
		found[id(&items[i])] = true
	}
	for _, want := range ids {
		if !found[want] {
			return k.notFound(want)
		}
	}
	return nil
}

// VPCs.

const vpcQuery = `SELECT v.id, v.cidr, v.state, v.created_at, t.key, t.value
	FROM vpcs v LEFT JOIN tags t ON t.resource_id = v.id`

func vpcDest(v *postern.VPC) []any                { return []any{&v.ID, &v.CIDR, &v.State, timeCol{&v.CreatedAt}} }
func vpcID(v *postern.VPC) string                 { return v.ID }
func vpcTags(v *postern.VPC) *[]postern.Tag       { return &v.Tags }
func subnetID(s *postern.Subnet) string           { return s.ID }
func subnetTags(s *postern.Subnet) *[]postern.Tag { return &s.Tags }

// CreateVPC stores a new VPC with its tags.
func (s *Store) CreateVPC(ctx context.Context, v *postern.VPC) error {
	if v == nil || !strings.HasPrefix(v.ID, vpcKind.prefix) {
		return postern.Invalidf("a VPC needs an id starting with %s", vpcKind.prefix)
	}
	created, err := timeArg(v.CreatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create a VPC", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO vpcs (id, cidr, state, created_at) VALUES (?, ?, ?, ?)`, v.ID, v.CIDR, v.State, created)
		if s.d.IsUnique(err) {
			return postern.Existsf("VPC %s already exists", v.ID)
		}
		if err != nil {
			return err
		}
		return insertTags(ctx, tx, v.ID, v.Tags)
	})
}

// GetVPC returns one VPC with its tags.
func (s *Store) GetVPC(ctx context.Context, id string) (*postern.VPC, error) {
	vs, err := queryTagged(ctx, s.r, vpcQuery+` WHERE v.id = ? ORDER BY t.key`, []any{id}, vpcDest, vpcID, vpcTags)
	if err != nil {
		return nil, dbErr(ctx, err, "read a VPC")
	}
	if len(vs) == 0 {
		return nil, vpcKind.notFound(id)
	}
	return &vs[0], nil
}

// ListVPCs returns the VPCs with the given ids (all when empty), by id.
func (s *Store) ListVPCs(ctx context.Context, ids []string) ([]postern.VPC, error) {
	where, args := idFilter("v.id", ids)
	vs, err := queryTagged(ctx, s.r, vpcQuery+where+` ORDER BY v.id, t.key`, args, vpcDest, vpcID, vpcTags)
	if err != nil {
		return nil, dbErr(ctx, err, "list VPCs")
	}
	if err := firstMissing(vpcKind, ids, vs, vpcID); err != nil {
		return nil, err
	}
	return vs, nil
}

// DeleteVPC deletes a VPC that has no subnets, and its tags.
func (s *Store) DeleteVPC(ctx context.Context, id string) error {
	return s.writeTx(ctx, "delete a VPC", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM vpcs WHERE id = ?`, id); err != nil {
			return err
		} else if !ok {
			return vpcKind.notFound(id)
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM subnets WHERE vpc_id = ? LIMIT 1`, id); err != nil {
			return err
		} else if ok {
			return postern.Conflictf("VPC %s has subnets; delete them first", id)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tags WHERE resource_id = ?`, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM vpcs WHERE id = ?`, id)
		return err
	})
}

// Subnets.

const subnetQuery = `SELECT s.id, s.vpc_id, s.cidr, s.availability_zone, s.state, s.created_at, t.key, t.value
	FROM subnets s LEFT JOIN tags t ON t.resource_id = s.id`

func subnetDest(s *postern.Subnet) []any {
	return []any{&s.ID, &s.VPCID, &s.CIDR, &s.AvailabilityZone, &s.State, timeCol{&s.CreatedAt}}
}

// CreateSubnet stores a new subnet of an existing VPC, with its tags.
func (s *Store) CreateSubnet(ctx context.Context, sn *postern.Subnet) error {
	if sn == nil || !strings.HasPrefix(sn.ID, subnetKind.prefix) {
		return postern.Invalidf("a subnet needs an id starting with %s", subnetKind.prefix)
	}
	created, err := timeArg(sn.CreatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create a subnet", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM vpcs WHERE id = ?`, sn.VPCID); err != nil {
			return err
		} else if !ok {
			return vpcKind.notFound(sn.VPCID)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO subnets (id, vpc_id, cidr, availability_zone, state, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			sn.ID, sn.VPCID, sn.CIDR, sn.AvailabilityZone, sn.State, created)
		if s.d.IsUnique(err) {
			return postern.Existsf("subnet %s already exists", sn.ID)
		}
		if err != nil {
			return err
		}
		return insertTags(ctx, tx, sn.ID, sn.Tags)
	})
}

// GetSubnet returns one subnet with its tags.
func (s *Store) GetSubnet(ctx context.Context, id string) (*postern.Subnet, error) {
	ss, err := queryTagged(ctx, s.r, subnetQuery+` WHERE s.id = ? ORDER BY t.key`, []any{id}, subnetDest, subnetID, subnetTags)
	if err != nil {
		return nil, dbErr(ctx, err, "read a subnet")
	}
	if len(ss) == 0 {
		return nil, subnetKind.notFound(id)
	}
	return &ss[0], nil
}

// ListSubnets returns the subnets with the given ids (all when empty), by
// id.
func (s *Store) ListSubnets(ctx context.Context, ids []string) ([]postern.Subnet, error) {
	where, args := idFilter("s.id", ids)
	ss, err := queryTagged(ctx, s.r, subnetQuery+where+` ORDER BY s.id, t.key`, args, subnetDest, subnetID, subnetTags)
	if err != nil {
		return nil, dbErr(ctx, err, "list subnets")
	}
	if err := firstMissing(subnetKind, ids, ss, subnetID); err != nil {
		return nil, err
	}
	return ss, nil
}

// DeleteSubnet deletes a subnet in which no instance other than terminated
// ones is placed, and its tags.
func (s *Store) DeleteSubnet(ctx context.Context, id string) error {
	return s.writeTx(ctx, "delete a subnet", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM subnets WHERE id = ?`, id); err != nil {
			return err
		} else if !ok {
			return subnetKind.notFound(id)
		}
		if ok, err := exists(ctx, tx, `SELECT 1 FROM instances WHERE subnet_id = ? AND state <> ? LIMIT 1`, id, postern.InstanceTerminated); err != nil {
			return err
		} else if ok {
			return postern.Conflictf("subnet %s has instances that are not terminated; terminate them first", id)
		}
		var eice string
		err := tx.QueryRowContext(ctx, `SELECT id FROM endpoints WHERE subnet_id = ? AND state NOT IN (?, ?) LIMIT 1`,
			id, postern.EndpointDeleteInProgress, postern.EndpointDeleteComplete).Scan(&eice)
		if err == nil {
			return postern.Conflictf("subnet %s holds Instance Connect Endpoint %s; delete it first", id, eice)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM tags WHERE resource_id = ?`, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM subnets WHERE id = ?`, id)
		return err
	})
}

// Instances.

const instanceQuery = `SELECT i.id, i.state, i.hostname, i.platform, i.private_ip, i.public_ip, i.vpc_id, i.subnet_id,
	i.launch_time, i.last_seen, i.agent_key, i.activation_id, i.os, i.host_keys, i.ssh_port, t.key, t.value
	FROM instances i LEFT JOIN tags t ON t.resource_id = i.id`

// getInstanceSQL reads one instance: every key push and tunnel does.
const getInstanceSQL = instanceQuery + ` WHERE i.id = ? ORDER BY t.key`

func instanceDest(i *postern.Instance) []any {
	return []any{&i.ID, &i.State, &i.Hostname, &i.Platform, &i.PrivateIP, &i.PublicIP, &i.VPCID, &i.SubnetID,
		timeCol{&i.LaunchTime}, timeCol{&i.LastSeen}, &i.AgentKey, &i.ActivationID, &i.OS, jsonCol{&i.HostKeys}, &i.SSHPort}
}
func instanceID(i *postern.Instance) string           { return i.ID }
func instanceTags(i *postern.Instance) *[]postern.Tag { return &i.Tags }

// PutInstance creates or replaces an instance; its tags become exactly
// i.Tags.
func (s *Store) PutInstance(ctx context.Context, i *postern.Instance) error {
	return s.writeTx(ctx, "store an instance", func(tx *sql.Tx) error { return putInstance(ctx, tx, i) })
}

func putInstance(ctx context.Context, tx *sql.Tx, i *postern.Instance) error {
	if i == nil || !strings.HasPrefix(i.ID, instanceKind.prefix) {
		return postern.Invalidf("an instance needs an id starting with %s", instanceKind.prefix)
	}
	launch, err := timeArg(i.LaunchTime)
	if err != nil {
		return err
	}
	seen, err := timeArg(i.LastSeen)
	if err != nil {
		return err
	}
	hostKeys, _ := json.Marshal(nonNil(i.HostKeys))
	if i.AgentKey == nil {
		i.AgentKey = []byte{}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO instances
		(id, state, hostname, platform, private_ip, public_ip, vpc_id, subnet_id, launch_time, last_seen,
		 agent_key, activation_id, os, host_keys, ssh_port)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, hostname = excluded.hostname,
			platform = excluded.platform, private_ip = excluded.private_ip, public_ip = excluded.public_ip,
			vpc_id = excluded.vpc_id, subnet_id = excluded.subnet_id, launch_time = excluded.launch_time,
			last_seen = excluded.last_seen, agent_key = excluded.agent_key, activation_id = excluded.activation_id,
			os = excluded.os, host_keys = excluded.host_keys, ssh_port = excluded.ssh_port`,
		i.ID, i.State, i.Hostname, i.Platform, i.PrivateIP, i.PublicIP, i.VPCID, i.SubnetID, launch, seen,
		i.AgentKey, i.ActivationID, i.OS, string(hostKeys), i.SSHPort); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tags WHERE resource_id = ?`, i.ID); err != nil {
		return err
	}
	return insertTags(ctx, tx, i.ID, i.Tags)
}

// GetInstance returns one instance with its tags.
//
// Every key push reads its instance, so reads are cached for
// instanceCacheTTL: this Store's own writes clear the cache at once, and
// another replica's change to an instance reaches this one within the TTL,
// as IAM changes do (authority's identity cache).
func (s *Store) GetInstance(ctx context.Context, id string) (*postern.Instance, error) {
	now := time.Now()
	c, ok, gen := s.instances.Get(id, now)
	if ok {
		return cloneInstance(&c), nil
	}
	is, err := queryTagged(ctx, hotReader{s: s}, getInstanceSQL, []any{id}, instanceDest, instanceID, instanceTags)
	if err != nil {
		return nil, dbErr(ctx, err, "read an instance")
	}
	if len(is) == 0 {
		return nil, instanceKind.notFound(id)
	}
	s.instances.Put(id, *cloneInstance(&is[0]), now, gen)
	return &is[0], nil
}

// instanceCacheTTL bounds how long GetInstance may answer from its cache.
const instanceCacheTTL = time.Second

// maxCachedInstances bounds the cache; it starts over when full.
const maxCachedInstances = 10000

// cloneInstance copies i deeply, so that callers never share a cached
// instance's slices.
func cloneInstance(i *postern.Instance) *postern.Instance {
	c := *i
	c.Tags = slices.Clone(i.Tags)
	c.AgentKey = slices.Clone(i.AgentKey)
	c.HostKeys = slices.Clone(i.HostKeys)
	return &c
}

// ListInstances returns the instances with the given ids (all when
// empty), by id.
func (s *Store) ListInstances(ctx context.Context, ids []string) ([]postern.Instance, error) {
	where, args := idFilter("i.id", ids)
	is, err := queryTagged(ctx, s.r, instanceQuery+where+` ORDER BY i.id, t.key`, args, instanceDest, instanceID, instanceTags)
	if err != nil {
		return nil, dbErr(ctx, err, "list instances")
	}
	if err := firstMissing(instanceKind, ids, is, instanceID); err != nil {
		return nil, err
	}
	return is, nil
}

// Tags.

// CreateTags adds or overwrites tags on every resource. When any resource
// does not exist nothing changes and the error names it.
func (s *Store) CreateTags(ctx context.Context, resourceIDs []string, tags []postern.Tag) error {
	return s.writeTx(ctx, "tag resources", func(tx *sql.Tx) error {
		if err := checkResources(ctx, tx, resourceIDs); err != nil {
			return err
		}
		for _, id := range resourceIDs {
			if err := insertTags(ctx, tx, id, tags); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteTags removes the selected tags from every resource: a selector
// with a nil Value removes its key whatever the value, one with a Value
// only when the value matches. With no selectors every tag of the
// resources is removed, as EC2's DeleteTags does without a Tag parameter.
// When any resource does not exist nothing changes.
func (s *Store) DeleteTags(ctx context.Context, resourceIDs []string, tags []postern.TagSelector) error {
	return s.writeTx(ctx, "untag resources", func(tx *sql.Tx) error {
		if err := checkResources(ctx, tx, resourceIDs); err != nil {
			return err
		}
		for _, id := range resourceIDs {
			if len(tags) == 0 {
				if _, err := tx.ExecContext(ctx, `DELETE FROM tags WHERE resource_id = ?`, id); err != nil {
					return err
				}
				continue
			}
			for _, sel := range tags {
				var err error
				if sel.Value == nil {
					_, err = tx.ExecContext(ctx, `DELETE FROM tags WHERE resource_id = ? AND key = ?`, id, sel.Key)
				} else {
					_, err = tx.ExecContext(ctx, `DELETE FROM tags WHERE resource_id = ? AND key = ? AND value = ?`, id, sel.Key, *sel.Value)
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
}
