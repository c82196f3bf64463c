package sigv4

import (
	"crypto/sha256"
	"crypto/subtle"
	"sync"
)

// maxCachedKeys bounds the derived-key cache. A key is good for one day,
// region and service, so this covers far more active keys than a Postern
// server sees.
const maxCachedKeys = 1024

// scopeKey names a derived signing key.
type scopeKey struct {
	accessKeyID, date, region, service string
}

// cachedKey is a derived signing key with a digest of the secret it was
// derived from, so that a rotated secret for the same access key id misses
// the cache instead of reusing a stale key. The digest, not the secret, is
// kept so that the cache holds nothing a caller could sign new days with.
type cachedKey struct {
	secretSum [sha256.Size]byte
	key       []byte
}

// keyCache holds derived signing keys, which cost four HMACs to compute.
// Its zero value is ready to use.
type keyCache struct {
	mu sync.Mutex
	m  map[scopeKey]cachedKey
}

// get returns the key for k if it was derived from secret.
func (c *keyCache) get(k scopeKey, secret string) (key []byte, ok bool) {
	sum := sha256.Sum256([]byte(secret))
	c.mu.Lock()
	e, found := c.m[k]
	c.mu.Unlock()
	if !found || subtle.ConstantTimeCompare(e.secretSum[:], sum[:]) != 1 {
		return nil, false
	}
	return e.key, true
}

// put stores key for k, evicting an arbitrary entry when full: entries of
// past days are never used again, and a random victim is as likely to be
// one of those as any.
func (c *keyCache) put(k scopeKey, secret string, key []byte) {
	sum := sha256.Sum256([]byte(secret))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[scopeKey]cachedKey)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxCachedKeys {
		for victim := range c.m {
			delete(c.m, victim)
			break
		}
	}
	c.m[k] = cachedKey{secretSum: sum, key: key}
}

// len reports the number of cached keys, for tests.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
