package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/postern-dev/postern"
)

// Messages name the missing or duplicate thing; they are shown to callers.

func userNotFound(name string) error  { return postern.NotFoundf("user %q does not exist", name) }
func groupNotFound(name string) error { return postern.NotFoundf("group %q does not exist", name) }
func keyNotFound(id string) error     { return postern.NotFoundf("access key %s does not exist", id) }

// GetMeta returns the value of a setting; KindNotFound when it is unset.
func (s *Store) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", postern.NotFoundf("setting %q is not set", key)
	}
	if err != nil {
		return "", dbErr(ctx, err, "read a setting")
	}
	return v, nil
}

// PutMetaIfAbsent stores value unless key is set, and returns the value
// stored afterwards.
func (s *Store) PutMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	var out string
	err := s.writeTx(ctx, "store a setting", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&out)
	})
	return out, err
}

// CreateUser stores a new user; KindExists when the name or id is taken.
func (s *Store) CreateUser(ctx context.Context, u *postern.User) error {
	if u == nil || u.Name == "" || u.ID == "" {
		return postern.Invalidf("a user needs a name and an id")
	}
	created, err := timeArg(u.CreatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create a user", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, u.Name); err != nil {
			return err
		} else if ok {
			return postern.Existsf("user %q already exists", u.Name)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO users (name, id, created_at) VALUES (?, ?, ?)`, u.Name, u.ID, created)
		if s.d.IsUnique(err) {
			return postern.Existsf("a user with id %s already exists", u.ID)
		}
		return err
	})
}

// GetUser returns the named user.
func (s *Store) GetUser(ctx context.Context, name string) (*postern.User, error) {
	var u postern.User
	var created sql.NullInt64
	err := hotReader{s: s}.QueryRowContext(ctx, getUserSQL, name).Scan(&u.Name, &u.ID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, userNotFound(name)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read a user")
	}
	u.CreatedAt = scanTime(created)
	return &u, nil
}

// ListUsers returns every user, by name.
func (s *Store) ListUsers(ctx context.Context) ([]postern.User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, id, created_at FROM users ORDER BY name`)
	return scanUsers(ctx, rows, err)
}

func scanUsers(ctx context.Context, rows *sql.Rows, err error) ([]postern.User, error) {
	if err != nil {
		return nil, dbErr(ctx, err, "list users")
	}
	defer rows.Close()
	out := []postern.User{}
	for rows.Next() {
		var u postern.User
		var created sql.NullInt64
		if err := rows.Scan(&u.Name, &u.ID, &created); err != nil {
			return nil, dbErr(ctx, err, "list users")
		}
		u.CreatedAt = scanTime(created)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(ctx, err, "list users")
	}
	return out, nil
}

// DeleteUser deletes a user that has no access keys, inline policies or
// group memberships left (IAM's DeleteConflict otherwise).
func (s *Store) DeleteUser(ctx context.Context, name string) error {
	return s.writeTx(ctx, "delete a user", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, name); err != nil {
			return err
		} else if !ok {
			return userNotFound(name)
		}
		for _, dep := range []struct{ query, msg string }{
			{`SELECT 1 FROM access_keys WHERE user_name = ? LIMIT 1`, "user %q has access keys; delete them first"},
			{`SELECT 1 FROM user_policies WHERE user_name = ? LIMIT 1`, "user %q has inline policies; delete them first"},
			{`SELECT 1 FROM group_members WHERE user_name = ? LIMIT 1`, "user %q is a member of groups; remove it from them first"},
			{`SELECT 1 FROM login_profiles WHERE user_name = ?`, "user %q has a login profile (console password); delete it first"},
			{`SELECT 1 FROM mfa_devices WHERE user_name = ?`, "user %q has an MFA device; deactivate it first"},
		} {
			if ok, err := exists(ctx, tx, dep.query, name); err != nil {
				return err
			} else if ok {
				return postern.Conflictf(dep.msg, name)
			}
		}
		if err := endSessions(ctx, tx, name); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
		return err
	})
}

func validStatus(st postern.AccessKeyStatus) error {
	if st != postern.AccessKeyActive && st != postern.AccessKeyInactive {
		return postern.Invalidf("access key status must be %s or %s, not %q", postern.AccessKeyActive, postern.AccessKeyInactive, st)
	}
	return nil
}

// CreateAccessKey stores a new key of an existing user.
func (s *Store) CreateAccessKey(ctx context.Context, k *postern.AccessKey) error {
	if k == nil || k.ID == "" || len(k.SealedSecret) == 0 {
		return postern.Invalidf("an access key needs an id and a sealed secret")
	}
	if err := validStatus(k.Status); err != nil {
		return err
	}
	created, err := timeArg(k.CreatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create an access key", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, k.UserName); err != nil {
			return err
		} else if !ok {
			return userNotFound(k.UserName)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO access_keys (id, user_name, sealed_secret, status, created_at) VALUES (?, ?, ?, ?, ?)`,
			k.ID, k.UserName, k.SealedSecret, string(k.Status), created)
		if s.d.IsUnique(err) {
			return postern.Existsf("access key %s already exists", k.ID)
		}
		return err
	})
}

const accessKeyColumns = `id, user_name, sealed_secret, status, created_at`

func scanAccessKey(sc interface{ Scan(...any) error }) (postern.AccessKey, error) {
	var k postern.AccessKey
	var status string
	var created sql.NullInt64
	err := sc.Scan(&k.ID, &k.UserName, &k.SealedSecret, &status, &created)
	k.Status, k.CreatedAt = postern.AccessKeyStatus(status), scanTime(created)
	return k, err
}

// GetAccessKey returns the key with id.
func (s *Store) GetAccessKey(ctx context.Context, id string) (*postern.AccessKey, error) {
	k, err := scanAccessKey(s.r.QueryRowContext(ctx, `SELECT `+accessKeyColumns+` FROM access_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keyNotFound(id)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read an access key")
	}
	return &k, nil
}

// ListAccessKeys returns a user's keys, oldest first.
func (s *Store) ListAccessKeys(ctx context.Context, userName string) ([]postern.AccessKey, error) {
	out := []postern.AccessKey{}
	err := s.readTx(ctx, "list access keys", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, userName); err != nil {
			return err
		} else if !ok {
			return userNotFound(userName)
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+accessKeyColumns+` FROM access_keys WHERE user_name = ? ORDER BY created_at, id`, userName)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			k, err := scanAccessKey(rows)
			if err != nil {
				return err
			}
			out = append(out, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateAccessKeyStatus makes a key Active or Inactive.
func (s *Store) UpdateAccessKeyStatus(ctx context.Context, id string, status postern.AccessKeyStatus) error {
	if err := validStatus(status); err != nil {
		return err
	}
	return s.writeTx(ctx, "update an access key", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE access_keys SET status = ? WHERE id = ?`, string(status), id)
		return changed(res, err, keyNotFound(id))
	})
}

// DeleteAccessKey deletes the key with id.
func (s *Store) DeleteAccessKey(ctx context.Context, id string) error {
	return s.writeTx(ctx, "delete an access key", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM access_keys WHERE id = ?`, id)
		return changed(res, err, keyNotFound(id))
	})
}

// changed turns "no row changed" into notFound.
func changed(res sql.Result, err, notFound error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// CreateGroup stores a new group; KindExists when the name or id is taken.
func (s *Store) CreateGroup(ctx context.Context, g *postern.Group) error {
	if g == nil || g.Name == "" || g.ID == "" {
		return postern.Invalidf("a group needs a name and an id")
	}
	created, err := timeArg(g.CreatedAt)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "create a group", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM iam_groups WHERE name = ?`, g.Name); err != nil {
			return err
		} else if ok {
			return postern.Existsf("group %q already exists", g.Name)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO iam_groups (name, id, created_at) VALUES (?, ?, ?)`, g.Name, g.ID, created)
		if s.d.IsUnique(err) {
			return postern.Existsf("a group with id %s already exists", g.ID)
		}
		return err
	})
}

// GetGroup returns the named group.
func (s *Store) GetGroup(ctx context.Context, name string) (*postern.Group, error) {
	var g postern.Group
	var created sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT name, id, created_at FROM iam_groups WHERE name = ?`, name).Scan(&g.Name, &g.ID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, groupNotFound(name)
	}
	if err != nil {
		return nil, dbErr(ctx, err, "read a group")
	}
	g.CreatedAt = scanTime(created)
	return &g, nil
}

// ListGroups returns every group, by name.
func (s *Store) ListGroups(ctx context.Context) ([]postern.Group, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, id, created_at FROM iam_groups ORDER BY name`)
	return scanGroups(ctx, rows, err)
}

func scanGroups(ctx context.Context, rows *sql.Rows, err error) ([]postern.Group, error) {
	if err != nil {
		return nil, dbErr(ctx, err, "list groups")
	}
	defer rows.Close()
	out := []postern.Group{}
	for rows.Next() {
		var g postern.Group
		var created sql.NullInt64
		if err := rows.Scan(&g.Name, &g.ID, &created); err != nil {
			return nil, dbErr(ctx, err, "list groups")
		}
		g.CreatedAt = scanTime(created)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(ctx, err, "list groups")
	}
	return out, nil
}

// DeleteGroup deletes a group with no members and no inline policies.
func (s *Store) DeleteGroup(ctx context.Context, name string) error {
	return s.writeTx(ctx, "delete a group", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM iam_groups WHERE name = ?`, name); err != nil {
			return err
		} else if !ok {
			return groupNotFound(name)
		}
		for _, dep := range []struct{ query, msg string }{
			{`SELECT 1 FROM group_members WHERE group_name = ? LIMIT 1`, "group %q has members; remove them first"},
			{`SELECT 1 FROM group_policies WHERE group_name = ? LIMIT 1`, "group %q has inline policies; delete them first"},
		} {
			if ok, err := exists(ctx, tx, dep.query, name); err != nil {
				return err
			} else if ok {
				return postern.Conflictf(dep.msg, name)
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM iam_groups WHERE name = ?`, name)
		return err
	})
}

// checkUserAndGroup reports which of the two does not exist.
func checkUserAndGroup(ctx context.Context, q queryer, group, user string) error {
	if ok, err := exists(ctx, q, `SELECT 1 FROM iam_groups WHERE name = ?`, group); err != nil {
		return err
	} else if !ok {
		return groupNotFound(group)
	}
	if ok, err := exists(ctx, q, `SELECT 1 FROM users WHERE name = ?`, user); err != nil {
		return err
	} else if !ok {
		return userNotFound(user)
	}
	return nil
}

// AddUserToGroup makes user a member of group. Adding a member again is
// not an error, as in IAM.
func (s *Store) AddUserToGroup(ctx context.Context, group, user string) error {
	return s.writeTx(ctx, "add a user to a group", func(tx *sql.Tx) error {
		if err := checkUserAndGroup(ctx, tx, group, user); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO group_members (group_name, user_name) VALUES (?, ?) ON CONFLICT DO NOTHING`, group, user)
		return err
	})
}

// RemoveUserFromGroup ends a membership; KindNotFound when the group, the
// user or the membership does not exist.
func (s *Store) RemoveUserFromGroup(ctx context.Context, group, user string) error {
	return s.writeTx(ctx, "remove a user from a group", func(tx *sql.Tx) error {
		if err := checkUserAndGroup(ctx, tx, group, user); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM group_members WHERE group_name = ? AND user_name = ?`, group, user)
		return changed(res, err, postern.NotFoundf("user %q is not a member of group %q", user, group))
	})
}

// ListGroupsForUser returns the groups user belongs to, by name.
func (s *Store) ListGroupsForUser(ctx context.Context, user string) ([]postern.Group, error) {
	var out []postern.Group
	err := s.readTx(ctx, "list a user's groups", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM users WHERE name = ?`, user); err != nil {
			return err
		} else if !ok {
			return userNotFound(user)
		}
		rows, err := tx.QueryContext(ctx, `SELECT g.name, g.id, g.created_at FROM iam_groups g
			JOIN group_members m ON m.group_name = g.name WHERE m.user_name = ? ORDER BY g.name`, user)
		out, err = scanGroups(ctx, rows, err)
		return err
	})
	return out, err
}

// ListGroupMembers returns the members of group, by name.
func (s *Store) ListGroupMembers(ctx context.Context, group string) ([]postern.User, error) {
	var out []postern.User
	err := s.readTx(ctx, "list a group's members", func(tx *sql.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM iam_groups WHERE name = ?`, group); err != nil {
			return err
		} else if !ok {
			return groupNotFound(group)
		}
		rows, err := tx.QueryContext(ctx, `SELECT u.name, u.id, u.created_at FROM users u
			JOIN group_members m ON m.user_name = u.name WHERE m.group_name = ? ORDER BY u.name`, group)
		out, err = scanUsers(ctx, rows, err)
		return err
	})
	return out, err
}

// policyTable describes where the policies of one owner kind live.
type policyTable struct {
	policies, owners, ownerCol string
	notFound                   func(string) error
}

func policyTableFor(kind postern.PolicyOwnerKind) (policyTable, error) {
	switch kind {
	case postern.PolicyOwnerUser:
		return policyTable{"user_policies", "users", "user_name", userNotFound}, nil
	case postern.PolicyOwnerGroup:
		return policyTable{"group_policies", "iam_groups", "group_name", groupNotFound}, nil
	}
	return policyTable{}, postern.Invalidf("policy owner kind must be %q or %q, not %q", postern.PolicyOwnerUser, postern.PolicyOwnerGroup, kind)
}

func (pt policyTable) checkOwner(ctx context.Context, q queryer, owner string) error {
	ok, err := exists(ctx, q, `SELECT 1 FROM `+pt.owners+` WHERE name = ?`, owner)
	if err != nil {
		return err
	}
	if !ok {
		return pt.notFound(owner)
	}
	return nil
}

func policyNotFound(kind postern.PolicyOwnerKind, owner, name string) error {
	return postern.NotFoundf("policy %q of %s %q does not exist", name, kind, owner)
}

// PutPolicy creates or replaces an inline policy of an existing owner.
func (s *Store) PutPolicy(ctx context.Context, p *postern.InlinePolicy) error {
	if p == nil || p.Name == "" {
		return postern.Invalidf("a policy needs a name")
	}
	pt, err := policyTableFor(p.OwnerKind)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "store a policy", func(tx *sql.Tx) error {
		if err := pt.checkOwner(ctx, tx, p.OwnerName); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO `+pt.policies+` (`+pt.ownerCol+`, name, document) VALUES (?, ?, ?)
			ON CONFLICT (`+pt.ownerCol+`, name) DO UPDATE SET document = excluded.document`, p.OwnerName, p.Name, p.Document)
		return err
	})
}

// GetPolicy returns one inline policy.
func (s *Store) GetPolicy(ctx context.Context, kind postern.PolicyOwnerKind, owner, name string) (*postern.InlinePolicy, error) {
	pt, err := policyTableFor(kind)
	if err != nil {
		return nil, err
	}
	p := &postern.InlinePolicy{OwnerKind: kind, OwnerName: owner, Name: name}
	err = s.readTx(ctx, "read a policy", func(tx *sql.Tx) error {
		if err := pt.checkOwner(ctx, tx, owner); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT document FROM `+pt.policies+` WHERE `+pt.ownerCol+` = ? AND name = ?`, owner, name).Scan(&p.Document)
		if errors.Is(err, sql.ErrNoRows) {
			return policyNotFound(kind, owner, name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ListPolicies returns the inline policies of one owner, by name.
func (s *Store) ListPolicies(ctx context.Context, kind postern.PolicyOwnerKind, owner string) ([]postern.InlinePolicy, error) {
	pt, err := policyTableFor(kind)
	if err != nil {
		return nil, err
	}
	out := []postern.InlinePolicy{}
	err = s.readTx(ctx, "list policies", func(tx *sql.Tx) error {
		if err := pt.checkOwner(ctx, tx, owner); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT name, document FROM `+pt.policies+` WHERE `+pt.ownerCol+` = ? ORDER BY name`, owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			p := postern.InlinePolicy{OwnerKind: kind, OwnerName: owner}
			if err := rows.Scan(&p.Name, &p.Document); err != nil {
				return err
			}
			out = append(out, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeletePolicy deletes one inline policy.
func (s *Store) DeletePolicy(ctx context.Context, kind postern.PolicyOwnerKind, owner, name string) error {
	pt, err := policyTableFor(kind)
	if err != nil {
		return err
	}
	return s.writeTx(ctx, "delete a policy", func(tx *sql.Tx) error {
		if err := pt.checkOwner(ctx, tx, owner); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM `+pt.policies+` WHERE `+pt.ownerCol+` = ? AND name = ?`, owner, name)
		return changed(res, err, policyNotFound(kind, owner, name))
	})
}

// Reads on every API call's path (see hotQueries).
const (
	getUserSQL      = `SELECT name, id, created_at FROM users WHERE name = ?`
	userExistsSQL   = `SELECT 1 FROM users WHERE name = ?`
	userPoliciesSQL = `
		SELECT 0, user_name, name, document FROM user_policies WHERE user_name = ?
		UNION ALL
		SELECT 1, p.group_name, p.name, p.document FROM group_policies p
			JOIN group_members m ON m.group_name = p.group_name WHERE m.user_name = ?
		ORDER BY 1, 2, 3`
)

// PoliciesForUser returns the user's own inline policies (by name) and
// then those of each group the user belongs to (by group, then name).
func (s *Store) PoliciesForUser(ctx context.Context, user string) ([]postern.InlinePolicy, error) {
	out := []postern.InlinePolicy{}
	err := s.readTx(ctx, "read a user's policies", func(tx *sql.Tx) error {
		q := hotReader{s: s, tx: tx} // every API call asks
		if ok, err := exists(ctx, q, userExistsSQL, user); err != nil {
			return err
		} else if !ok {
			return userNotFound(user)
		}
		rows, err := q.QueryContext(ctx, userPoliciesSQL, user, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var fromGroup bool
			var p postern.InlinePolicy
			if err := rows.Scan(&fromGroup, &p.OwnerName, &p.Name, &p.Document); err != nil {
				return err
			}
			p.OwnerKind = postern.PolicyOwnerUser
			if fromGroup {
				p.OwnerKind = postern.PolicyOwnerGroup
			}
			out = append(out, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
