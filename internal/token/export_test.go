package token

// CacheLen returns how many verified tokens v remembers, for tests.
func (v *Verifier) CacheLen() int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}
