package token

import "sync"

// cache remembers verified tokens, keyed by the whole token string, so that
// a token is verified once however often it is used. Only tokens that passed
// verification enter, so an entry's size is bounded by what the issuer
// signs, and there are at most max entries: when full, an arbitrary one is
// forgotten (Go's map iteration starts anywhere), which costs at worst one
// more verification. Callers recheck exp, nbf and iat on every hit.
type cache struct {
	max int

	mu      sync.RWMutex
	entries map[string]cached
}

type cached struct {
	kid    string
	claims *Claims
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[string]cached, min(max, 1024))}
}

func (c *cache) get(signed string) (*Claims, bool) {
	c.mu.RLock()
	e, ok := c.entries[signed]
	c.mu.RUnlock()
	return e.claims, ok
}

// add remembers a token signed by kid, if current(kid) still holds under the
// lock: a key set replaced meanwhile has already been applied by retain.
func (c *cache) add(signed, kid string, claims *Claims, current func(kid string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !current(kid) {
		return
	}
	if _, ok := c.entries[signed]; !ok && len(c.entries) >= c.max {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[signed] = cached{kid: kid, claims: claims}
}

func (c *cache) remove(signed string) {
	c.mu.Lock()
	delete(c.entries, signed)
	c.mu.Unlock()
}

// retain forgets the tokens signed by keys for which keep is false.
func (c *cache) retain(keep func(kid string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for signed, e := range c.entries {
		if !keep(e.kid) {
			delete(c.entries, signed)
		}
	}
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
