// Package token issues and verifies the app's JSON Web Tokens.
//
// Tokens are signed with Ed25519 (EdDSA) by the services that log users in
// (an Issuer, holding the private key), and verified by every service with a
// set of public keys (a Verifier), so that a verifier cannot mint tokens and
// keys can rotate: verifiers accept the previous, the current and the next
// key while the issuer signs with one. HS256 with a shared secret remains
// for the course's first steps, only when asked for explicitly.
//
// Tokens carry iss, aud, sub, email, iat, nbf, exp and jti, and kid and
// typ "JWT" in their header. Verification is strict, following RFC 8725:
// base64url is decoded strictly, typ must be "JWT", any crit header is
// refused, the key is found by kid and its algorithm must be the key's,
// issuer, audience and expiry are required and checked, and the clock
// leeway is small. Verified tokens are cached (see Options.CacheSize). The
// package does not import net/http: reading the token from a request is the
// handlers' job.
package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MinKeySize is the shortest HS256 key accepted, in bytes: RFC 7518 §3.2
// requires a key at least as long as the hash output.
const MinKeySize = 32

// Leeway is the clock skew tolerated when checking exp, nbf and iat.
const Leeway = 30 * time.Second

// ErrInvalid is wrapped by every error Verify returns.
var ErrInvalid = errors.New("invalid token")

// ErrMalformed is for a token that is not even shaped like one, such as a
// malformed Authorization header.
var ErrMalformed = fmt.Errorf("%w: %w", ErrInvalid, jwt.ErrTokenMalformed)

var (
	// errAlgorithm marks a token whose alg is not its key's, "none" included.
	errAlgorithm = errors.New("algorithm is not the key's")
	// errUnknownKey marks a token whose kid names no key in the set.
	errUnknownKey = errors.New("unknown key")
	// errHeader marks a typ other than "JWT" or a crit header.
	errHeader = errors.New("header not accepted")
)

// Options are the settings of an Issuer and a Verifier other than keys.
type Options struct {
	Issuer   string        // the iss claim issued and required
	Audience string        // the aud claim issued and required
	TTL      time.Duration // how long an issued token is valid

	// CacheSize is how many verified tokens a Verifier remembers, so that
	// a token reused for its whole life is verified once; 0 turns it off.
	CacheSize int

	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

func (o *Options) check() error {
	switch {
	case o.Issuer == "":
		return errors.New("token: issuer is empty")
	case o.Audience == "":
		return errors.New("token: audience is empty")
	case o.CacheSize < 0:
		return fmt.Errorf("token: cache size is %d, want 0 or more", o.CacheSize)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Claims are the claims of the app's tokens.
type Claims struct {
	Email string `json:"email,omitempty"`
	jwt.RegisteredClaims
}

// Issuer signs tokens with one key, which SetKey replaces.
type Issuer struct {
	key  atomic.Pointer[Key]
	opts Options
}

// NewIssuer returns an Issuer signing with k, which must hold a private key.
func NewIssuer(k Key, opts Options) (*Issuer, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.TTL <= 0 {
		return nil, fmt.Errorf("token: TTL is %v, want more than 0", opts.TTL)
	}
	i := &Issuer{opts: opts}
	if err := i.SetKey(k); err != nil {
		return nil, err
	}
	return i, nil
}

// SetKey makes the Issuer sign with k from now on.
func (i *Issuer) SetKey(k Key) error {
	if !k.CanSign() {
		return fmt.Errorf("token: key %s has no private part: it cannot sign", k.ID)
	}
	i.key.Store(&k)
	return nil
}

// KeyID returns the ID of the key the Issuer signs with.
func (i *Issuer) KeyID() string { return i.key.Load().ID }

// Issue returns a signed token for the user named subject, and when it expires.
func (i *Issuer) Issue(subject, email string) (string, time.Time, error) {
	k := i.key.Load()
	now := i.opts.Now().Truncate(time.Second)
	expires := now.Add(i.opts.TTL)
	claims := Claims{
		Email: email,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.opts.Issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{i.opts.Audience},
			ExpiresAt: jwt.NewNumericDate(expires),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
	}
	t := jwt.NewWithClaims(k.method(), claims) // sets typ "JWT"
	t.Header["kid"] = k.ID
	signed, err := t.SignedString(k.private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: signing: %w", err)
	}
	return signed, expires, nil
}

// keySet is a Verifier's keys by ID, replaced whole when they change.
type keySet struct {
	byID map[string]Key
	list []Key
	jwks []byte
}

func newKeySet(keys []Key) (*keySet, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no keys to verify with")
	}
	s := &keySet{byID: make(map[string]Key, len(keys))}
	for _, k := range keys {
		k.private = nil
		if k.Algorithm == HS256 {
			k.private = k.public // its only part, used to verify
		}
		if _, dup := s.byID[k.ID]; dup {
			continue
		}
		s.byID[k.ID] = k
		s.list = append(s.list, k.Public())
	}
	s.jwks = JWKS(s.list)
	return s, nil
}

// Verifier checks tokens against a set of keys, which SetKeys replaces.
// It never signs.
type Verifier struct {
	keys   atomic.Pointer[keySet]
	opts   Options
	parser *jwt.Parser
	cache  *cache // nil: no cache
}

// NewVerifier returns a Verifier accepting tokens signed by any of keys.
func NewVerifier(keys []Key, opts Options) (*Verifier, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	v := &Verifier{
		opts: opts,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{EdDSA, HS256}), // and the key's own, checked in keyFunc
			jwt.WithStrictDecoding(),
			jwt.WithIssuer(opts.Issuer),
			jwt.WithAudience(opts.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(Leeway),
			jwt.WithTimeFunc(opts.Now),
		),
	}
	if opts.CacheSize > 0 {
		v.cache = newCache(opts.CacheSize)
	}
	if err := v.SetKeys(keys); err != nil {
		return nil, err
	}
	return v, nil
}

// SetKeys makes the Verifier accept exactly keys from now on. Cached tokens
// signed by a key no longer in the set are forgotten.
func (v *Verifier) SetKeys(keys []Key) error {
	s, err := newKeySet(keys)
	if err != nil {
		return err
	}
	v.keys.Store(s)
	if v.cache != nil {
		v.cache.retain(func(kid string) bool { _, ok := s.byID[kid]; return ok })
	}
	return nil
}

// Keys returns the keys the Verifier accepts, without private parts.
func (v *Verifier) Keys() []Key { return v.keys.Load().list }

// JWKS returns the accepted Ed25519 keys as a JWK Set document.
func (v *Verifier) JWKS() []byte { return v.keys.Load().jwks }

// Verify checks a token's signature and claims and returns its claims,
// which the caller must not modify. Every error wraps ErrInvalid; Reason
// tells them apart for metrics.
func (v *Verifier) Verify(signed string) (*Claims, error) {
	if v.cache != nil {
		if c, ok := v.cache.get(signed); ok {
			if err := v.checkTimes(c); err != nil {
				v.cache.remove(signed)
				return nil, err
			}
			return c, nil
		}
	}
	set := v.keys.Load()
	var kid string
	claims := new(Claims)
	tok, err := v.parser.ParseWithClaims(signed, claims, func(t *jwt.Token) (any, error) {
		k, err := set.keyFor(t)
		kid = k.ID
		return k.public, err
	})
	if err != nil {
		if tok != nil && tok.Method != nil && tok.Method.Alg() != EdDSA && tok.Method.Alg() != HS256 {
			err = fmt.Errorf("%w: %w", errAlgorithm, err) // jwt reports it as a bad signature
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if claims.Subject == "" {
		return nil, fmt.Errorf("%w: %w: sub", ErrInvalid, jwt.ErrTokenRequiredClaimMissing)
	}
	if v.cache != nil {
		v.cache.add(signed, kid, claims, func(kid string) bool { _, ok := v.keys.Load().byID[kid]; return ok })
	}
	return claims, nil
}

// keyFor returns the key t names, after checking t's header: typ "JWT",
// no crit, a known kid, and the key's own algorithm.
func (s *keySet) keyFor(t *jwt.Token) (Key, error) {
	if typ, ok := t.Header["typ"].(string); !ok || typ != "JWT" {
		return Key{}, fmt.Errorf("%w: typ %v, want \"JWT\"", errHeader, t.Header["typ"])
	}
	if _, ok := t.Header["crit"]; ok {
		return Key{}, fmt.Errorf("%w: crit", errHeader) // RFC 7515 §4.1.11: no extension is understood
	}
	kid, _ := t.Header["kid"].(string)
	k, ok := s.byID[kid]
	if !ok {
		return Key{}, fmt.Errorf("%w: kid %.64q", errUnknownKey, kid)
	}
	if t.Method.Alg() != k.Algorithm {
		return Key{}, fmt.Errorf("%w: alg %s for a %s key", errAlgorithm, t.Method.Alg(), k.Algorithm)
	}
	return k, nil
}

// checkTimes rechecks a cached token's exp, nbf and iat, as the parser does.
func (v *Verifier) checkTimes(c *Claims) error {
	now := v.opts.Now()
	switch {
	case now.After(c.ExpiresAt.Add(Leeway)):
		return fmt.Errorf("%w: %w", ErrInvalid, jwt.ErrTokenExpired)
	case c.NotBefore != nil && now.Add(Leeway).Before(c.NotBefore.Time):
		return fmt.Errorf("%w: %w", ErrInvalid, jwt.ErrTokenNotValidYet)
	case c.IssuedAt != nil && now.Add(Leeway).Before(c.IssuedAt.Time):
		return fmt.Errorf("%w: %w", ErrInvalid, jwt.ErrTokenUsedBeforeIssued)
	}
	return nil
}

// Reason names why Verify rejected a token, in a few fixed words fit for a
// metric label: "malformed", "algorithm", "unknown_key", "header",
// "signature", "expired", "not_yet_valid", "issuer", "audience",
// "missing_claim" or "other".
func Reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, errUnknownKey):
		return "unknown_key"
	case errors.Is(err, errHeader):
		return "header"
	case errors.Is(err, errAlgorithm), errors.Is(err, jwt.ErrTokenUnverifiable): // unverifiable: an unknown alg
		return "algorithm"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not_yet_valid"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "missing_claim"
	default:
		return "other"
	}
}

// Reasons lists every value Reason returns, so that metrics can be
// initialised to zero for each.
var Reasons = []string{"malformed", "algorithm", "unknown_key", "header", "signature", "expired", "not_yet_valid", "issuer", "audience", "missing_claim", "other"}
