// Package authority is Postern's control-plane logic: who the caller is
// (SigV4 against stored access keys), what they may do (IAM policies), and
// the operations on identities and inventory. HTTP handlers in package api
// decode, call into it and render; they hold no logic of their own.
package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/password"
	"github.com/postern-dev/postern/policy"
	"github.com/postern-dev/postern/seal"
	"github.com/postern-dev/postern/sigv4"
	"github.com/postern-dev/postern/ttlcache"
	"github.com/postern-dev/postern/valid"
)

// Config holds the settings the authority needs.
type Config struct {
	Region  string // e.g. "us-east-1"
	Account string // 12 digits
	// PasswordParams are the Argon2id costs of new console passwords
	// (zero: password.DefaultParams).
	PasswordParams password.Params
}

// Authority implements authentication, authorization and the admin
// operations on top of a postern.Store.
type Authority struct {
	cfg      Config
	store    postern.Store
	sealer   *seal.Sealer
	verifier *sigv4.Verifier
	log      *slog.Logger
	now      func() time.Time
	hashing  chan struct{} // Argon2id slots (console.go)
	// dummyHash is verified for users without a password (console.go).
	dummyOnce sync.Once
	dummyHash string

	keys       *ttlcache.Cache[string, cachedKey] // access key id → key, briefly
	identities *ttlcache.Cache[string, identity]  // user → user and policies (identitycache.go)
	mu         sync.Mutex
	policies   map[string]*policy.Document // document text → parsed

	// endpointChanged, when set, hears of every endpoint whose settings
	// changed or whose deletion began, so that its process is told.
	endpointChanged func(*postern.Endpoint)
}

// keyCacheTTL bounds how long a deleted or deactivated key may still be
// honoured by this replica; local changes take effect at once.
const keyCacheTTL = 2 * time.Second

// maxCached bounds each cache of the authority; a full one starts over.
const maxCached = 10000

type cachedKey struct {
	key    postern.AccessKey
	secret string
}

// New returns an Authority. logger may be nil.
func New(cfg Config, st postern.Store, sealer *seal.Sealer, logger *slog.Logger) *Authority {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authority{
		cfg:        cfg,
		store:      st,
		sealer:     sealer,
		log:        logger,
		now:        time.Now,
		hashing:    make(chan struct{}, maxHashing),
		keys:       ttlcache.New[string, cachedKey](keyCacheTTL, maxCached),
		identities: ttlcache.New[string, identity](identityCacheTTL, maxCached),
		policies:   make(map[string]*policy.Document),
	}
	a.verifier = sigv4.NewVerifier(a.lookupSecret)
	return a
}

// Config returns the authority's settings.
func (a *Authority) Config() Config { return a.cfg }

// Store returns the underlying store.
func (a *Authority) Store() postern.Store { return a.store }

// Principal is an authenticated caller.
type Principal struct {
	User        postern.User
	AccessKeyID string
	ARN         string
	Signature   *sigv4.Result // nil for console sessions
	// MFA is true for a console session signed in with a second factor:
	// its policy evaluations see aws:MultiFactorAuthPresent=true.
	MFA bool
}

// UserARN returns the ARN of an IAM user in this account.
func (a *Authority) UserARN(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:user/%s", a.cfg.Account, name)
}

// GroupARN returns the ARN of an IAM group in this account.
func (a *Authority) GroupARN(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:group/%s", a.cfg.Account, name)
}

// EC2ARN returns the ARN of an EC2 resource, e.g. EC2ARN("instance", id).
func (a *Authority) EC2ARN(kind, id string) string {
	return fmt.Sprintf("arn:aws:ec2:%s:%s:%s/%s", a.cfg.Region, a.cfg.Account, kind, id)
}

// Authenticate verifies the request's SigV4 signature (header or presigned
// form) and returns the caller. body is the already-read request body.
// service is the signing name the request must carry ("ec2", "iam", …).
func (a *Authority) Authenticate(ctx context.Context, r *http.Request, body []byte, service string) (*Principal, error) {
	res, err := a.verifier.Verify(ctx, r, body)
	if err != nil {
		return nil, err
	}
	if res.Service != service {
		return nil, postern.CodedErrorf(postern.KindUnauthenticated, "InvalidSignatureException",
			"Credential should be scoped to correct service: '%s'.", service)
	}
	// IAM is a global service: SDKs sign it for us-east-1 whatever the
	// configured region.
	if res.Region != a.cfg.Region && !(service == "iam" && res.Region == "us-east-1") {
		return nil, postern.CodedErrorf(postern.KindUnauthenticated, "InvalidSignatureException",
			"Credential should be scoped to a valid region: '%s'.", a.cfg.Region)
	}
	k, err := a.accessKey(ctx, res.AccessKeyID)
	if err != nil {
		return nil, err
	}
	u, _, err := a.identityOf(ctx, k.key.UserName)
	if err != nil {
		if postern.IsKind(err, postern.KindNotFound) {
			return nil, unknownKey()
		}
		return nil, err
	}
	return &Principal{User: u, AccessKeyID: res.AccessKeyID, ARN: a.UserARN(u.Name), Signature: res}, nil
}

func unknownKey() error {
	return postern.CodedErrorf(postern.KindUnknownKey, "UnrecognizedClientException",
		"The security token included in the request is invalid.")
}

func (a *Authority) lookupSecret(ctx context.Context, id string) (string, error) {
	k, err := a.accessKey(ctx, id)
	if err != nil {
		return "", err
	}
	return k.secret, nil
}

// accessKey returns an active key and its opened secret, from a short-lived
// cache: every signed request needs it, twice.
func (a *Authority) accessKey(ctx context.Context, id string) (cachedKey, error) {
	now := a.now()
	c, ok, gen := a.keys.Get(id, now)
	if ok {
		if c.key.Status != postern.AccessKeyActive {
			return cachedKey{}, unknownKey()
		}
		return c, nil
	}
	if !valid.AccessKeyID(id) {
		return cachedKey{}, unknownKey()
	}
	k, err := a.store.GetAccessKey(ctx, id)
	if err != nil {
		if postern.IsKind(err, postern.KindNotFound) {
			return cachedKey{}, unknownKey()
		}
		return cachedKey{}, err
	}
	secret, err := a.sealer.Open(k.SealedSecret, []byte(k.ID))
	if err != nil {
		return cachedKey{}, postern.Internal(err, "access key %s cannot be opened", id)
	}
	c = cachedKey{key: *k, secret: string(secret)}
	a.keys.Put(id, c, now, gen)
	if k.Status != postern.AccessKeyActive {
		return cachedKey{}, unknownKey()
	}
	return c, nil
}

func (a *Authority) forgetKey(id string) { a.keys.Forget(id) }

// IdentifyKey returns the user name owning an access key id, without
// verifying anything, for audit records of calls that failed to
// authenticate. It returns "" when the key is unknown.
func (a *Authority) IdentifyKey(ctx context.Context, id string) string {
	if !valid.AccessKeyID(id) {
		return ""
	}
	k, err := a.store.GetAccessKey(ctx, id)
	if err != nil {
		return ""
	}
	return k.UserName
}

// isNotFound reports whether err says a thing does not exist.
func isNotFound(err error) bool {
	var e *postern.Error
	return errors.As(err, &e) && e.Kind == postern.KindNotFound
}
