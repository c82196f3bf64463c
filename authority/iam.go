package authority

import (
	"context"
	"fmt"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/policy"
	"github.com/postern-dev/postern/valid"
)

// maxAccessKeysPerUser is IAM's quota, kept so that rotation works the same.
const maxAccessKeysPerUser = 2

// ValidateName checks an IAM user, group or policy name.
func ValidateName(field, name string, max int) error {
	if name == "" {
		return postern.Invalidf("%s must not be empty", field)
	}
	if len(name) > max {
		return postern.Invalidf("%s must be at most %d characters, got %d", field, max, len(name))
	}
	if !valid.IAMName(name) {
		return postern.Invalidf("%s %q may contain only letters, digits and +=,.@_-", field, name)
	}
	return nil
}

// CreateUser creates an IAM user.
func (a *Authority) CreateUser(ctx context.Context, name string) (*postern.User, error) {
	if err := ValidateName("UserName", name, 64); err != nil {
		return nil, err
	}
	u := &postern.User{Name: name, ID: newUniqueID("AIDA"), CreatedAt: a.now().UTC()}
	if err := a.store.CreateUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// DeleteUser deletes a user that has no keys, policies or groups left.
func (a *Authority) DeleteUser(ctx context.Context, name string) error {
	if err := ValidateName("UserName", name, 64); err != nil {
		return err
	}
	return a.store.DeleteUser(ctx, name)
}

// CreateAccessKey creates an active key for user and returns it with its
// secret, which is shown this once and stored only sealed.
func (a *Authority) CreateAccessKey(ctx context.Context, user string) (*postern.AccessKey, string, error) {
	if err := ValidateName("UserName", user, 64); err != nil {
		return nil, "", err
	}
	keys, err := a.store.ListAccessKeys(ctx, user)
	if err != nil {
		return nil, "", err
	}
	if len(keys) >= maxAccessKeysPerUser {
		return nil, "", postern.CodedErrorf(postern.KindLimit, "LimitExceeded",
			"Cannot exceed quota for AccessKeysPerUser: %d", maxAccessKeysPerUser)
	}
	id, secret := newAccessKey()
	sealed, err := a.sealer.Seal([]byte(secret), []byte(id))
	if err != nil {
		return nil, "", postern.Internal(err, "cannot seal the new secret")
	}
	k := &postern.AccessKey{ID: id, UserName: user, SealedSecret: sealed, Status: postern.AccessKeyActive, CreatedAt: a.now().UTC()}
	if err := a.store.CreateAccessKey(ctx, k); err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// AccessKeyOwner returns the key with id, checking that it belongs to user
// when user is not empty (IAM answers NoSuchEntity otherwise).
func (a *Authority) AccessKeyOwner(ctx context.Context, id, user string) (*postern.AccessKey, error) {
	if !valid.AccessKeyID(id) {
		return nil, postern.Invalidf("AccessKeyId %q is not an access key id (AKIA followed by 16 characters)", id)
	}
	k, err := a.store.GetAccessKey(ctx, id)
	if err != nil {
		return nil, err
	}
	if user != "" && k.UserName != user {
		return nil, postern.NotFoundf("The Access Key with id %s cannot be found for user %s.", id, user)
	}
	return k, nil
}

// UpdateAccessKey sets a key Active or Inactive.
func (a *Authority) UpdateAccessKey(ctx context.Context, id, user string, status postern.AccessKeyStatus) error {
	if status != postern.AccessKeyActive && status != postern.AccessKeyInactive {
		return postern.Invalidf("Status must be Active or Inactive, got %q", status)
	}
	if _, err := a.AccessKeyOwner(ctx, id, user); err != nil {
		return err
	}
	defer a.forgetKey(id)
	return a.store.UpdateAccessKeyStatus(ctx, id, status)
}

// DeleteAccessKey deletes a key.
func (a *Authority) DeleteAccessKey(ctx context.Context, id, user string) error {
	if _, err := a.AccessKeyOwner(ctx, id, user); err != nil {
		return err
	}
	defer a.forgetKey(id)
	return a.store.DeleteAccessKey(ctx, id)
}

// CreateGroup creates an IAM group.
func (a *Authority) CreateGroup(ctx context.Context, name string) (*postern.Group, error) {
	if err := ValidateName("GroupName", name, 128); err != nil {
		return nil, err
	}
	g := &postern.Group{Name: name, ID: newUniqueID("AGPA"), CreatedAt: a.now().UTC()}
	if err := a.store.CreateGroup(ctx, g); err != nil {
		return nil, err
	}
	return g, nil
}

// PutPolicy validates and stores an inline policy of a user or group.
func (a *Authority) PutPolicy(ctx context.Context, p *postern.InlinePolicy) error {
	owner := "UserName"
	if p.OwnerKind == postern.PolicyOwnerGroup {
		owner = "GroupName"
	}
	if err := ValidateName(owner, p.OwnerName, 128); err != nil {
		return err
	}
	if err := ValidateName("PolicyName", p.Name, 128); err != nil {
		return err
	}
	if _, err := policy.Parse([]byte(p.Document)); err != nil {
		return err
	}
	return a.store.PutPolicy(ctx, p)
}

// AdminPolicyName is the inline policy the bootstrap admin receives.
const AdminPolicyName = "AdministratorAccess"

// AdminPolicy grants every action on every resource.
const AdminPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"Bootstrap","Effect":"Allow","Action":"*","Resource":"*"}]}`

// EnsureAdmin creates the user "admin" with AdminPolicy and one access key,
// unless it exists. It returns the new key and secret, or nils when the
// admin already existed.
func (a *Authority) EnsureAdmin(ctx context.Context) (*postern.AccessKey, string, error) {
	const name = "admin"
	if _, err := a.store.GetUser(ctx, name); err == nil {
		return nil, "", nil
	} else if !isNotFound(err) {
		return nil, "", err
	}
	if _, err := a.CreateUser(ctx, name); err != nil {
		return nil, "", fmt.Errorf("create admin user: %w", err)
	}
	if err := a.PutPolicy(ctx, &postern.InlinePolicy{OwnerKind: postern.PolicyOwnerUser, OwnerName: name, Name: AdminPolicyName, Document: AdminPolicy}); err != nil {
		return nil, "", fmt.Errorf("grant admin policy: %w", err)
	}
	return a.CreateAccessKey(ctx, name)
}
