package authority

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/policy"
)

// identityCacheTTL bounds how long another replica's IAM change may take
// to reach this one; this replica's own changes clear the cache at once
// (InvalidateIdentities). Every signed request needs the caller's user and
// policies, so reading them from the store each time dominates small calls.
const identityCacheTTL = time.Second

type identity struct {
	user postern.User
	docs []policy.NamedDocument
}

// InvalidateIdentities forgets every cached user and policy set; the API
// calls it after each successful IAM change.
func (a *Authority) InvalidateIdentities() { a.identities.Clear() }

// identityOf returns a user and their parsed policies, cached briefly.
func (a *Authority) identityOf(ctx context.Context, name string) (postern.User, []policy.NamedDocument, error) {
	now := a.now()
	id, ok, gen := a.identities.Get(name, now)
	if ok {
		return id.user, id.docs, nil
	}
	u, err := a.store.GetUser(ctx, name)
	if err != nil {
		return postern.User{}, nil, err
	}
	stored, err := a.store.PoliciesForUser(ctx, name)
	if err != nil {
		return postern.User{}, nil, err
	}
	docs := make([]policy.NamedDocument, 0, len(stored))
	for _, sp := range stored {
		pname := sp.Name
		if sp.OwnerKind == postern.PolicyOwnerGroup {
			pname = "group/" + sp.OwnerName + "/" + sp.Name
		}
		doc, err := a.parsed(sp.Document)
		if err != nil {
			// A stored document was valid when it was put; if it no
			// longer parses, it grants nothing. Should it hold a Deny,
			// skipping it would grant what the Deny took away: such a
			// document denies everything until it is mended.
			a.log.Error("stored policy does not parse", "owner", sp.OwnerName, "policy", sp.Name, "err", err)
			if !strings.Contains(strings.ToLower(sp.Document), "deny") {
				continue
			}
			doc, pname = denyAll(), pname+" (does not parse: denies everything)"
		}
		docs = append(docs, policy.NamedDocument{Name: pname, Doc: doc})
	}
	a.identities.Put(name, identity{user: *u, docs: docs}, now, gen)
	return *u, docs, nil
}

// denyAll stands in for a stored document that no longer parses and may
// hold a Deny.
var denyAll = sync.OnceValue(func() *policy.Document {
	d, err := policy.Parse([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`))
	if err != nil {
		panic(err)
	}
	return d
})
