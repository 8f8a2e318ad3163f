package token_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"example.com/app/internal/token"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes: the HS256 minimum
	now    = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock  = func() time.Time { return now }
	opts   = token.Options{Issuer: "auth.service", Audience: "app", TTL: time.Hour, Now: clock}
)

// pair is an Ed25519 key as a Key and as the raw private key an attacker
// or a test signs with.
type pair struct {
	key  token.Key
	priv ed25519.PrivateKey
}

func newPair(t testing.TB) pair {
	t.Helper()
	k, err := token.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := token.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pemDecode(pem)
	priv, err := parsePKCS8(block)
	if err != nil {
		t.Fatal(err)
	}
	return pair{key: k, priv: priv}
}

func newVerifier(t testing.TB, o token.Options, keys ...token.Key) *token.Verifier {
	t.Helper()
	v, err := token.NewVerifier(keys, o)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func newIssuer(t testing.TB, k token.Key) *token.Issuer {
	t.Helper()
	i, err := token.NewIssuer(k, opts)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	return i
}

// sign makes a token with any header, claims, algorithm and key, as an
// attacker or a misconfigured issuer could.
func sign(t *testing.T, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims, k any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
		} else {
			tok.Header[name] = v
		}
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatalf("signing test token: %v", err)
	}
	return s
}

// valid returns the claims of a good token, for cases to change one thing in.
func valid() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "auth.service", "aud": "app", "sub": "user", "email": "user@example.com",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "id",
	}
}

func with(change func(jwt.MapClaims)) jwt.MapClaims {
	c := valid()
	change(c)
	return c
}

func TestIssueThenVerify(t *testing.T) {
	a := newPair(t)
	i := newIssuer(t, a.key)
	v := newVerifier(t, opts, a.key.Public())
	signed, expires, err := i.Issue("user", "user@example.com")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if want := now.Add(time.Hour); !expires.Equal(want) {
		t.Errorf("Issue expires = %v, want %v", expires, want)
	}
	header, _, _ := strings.Cut(signed, ".")
	h, _ := base64.RawURLEncoding.DecodeString(header)
	if want := `{"alg":"EdDSA","kid":"` + a.key.ID + `","typ":"JWT"}`; string(h) != want {
		t.Errorf("issued header = %s, want %s", h, want)
	}
	c, err := v.Verify(signed)
	if err != nil {
		t.Fatalf("Verify(issued token) error = %v, want nil", err)
	}
	if c.Subject != "user" || c.Email != "user@example.com" || c.Issuer != "auth.service" ||
		len(c.Audience) != 1 || c.Audience[0] != "app" || c.ID == "" ||
		c.IssuedAt == nil || c.NotBefore == nil || !c.ExpiresAt.Time.Equal(now.Add(time.Hour)) {
		t.Errorf("Verify(issued token) claims = %+v, want every claim set", c)
	}
	other, _, err := i.Issue("user", "")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	oc, _ := v.Verify(other)
	if oc.ID == c.ID {
		t.Errorf("two tokens share jti %q, want a fresh one each", c.ID)
	}
}

func TestHS256(t *testing.T) {
	k, err := token.HMACKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	signed, _, err := newIssuer(t, k).Issue("user", "")
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, opts, k)
	if _, err := v.Verify(signed); err != nil {
		t.Errorf("Verify(HS256 token) with its key = %v, want nil", err)
	}
	if got := string(v.JWKS()); got != `{"keys":[]}`+"\n" {
		t.Errorf("JWKS with an HS256 key = %s, want no keys: a secret is never published", got)
	}
	if _, err := token.HMACKey(secret[:31]); err == nil {
		t.Error("HMACKey(31 bytes) error = nil, want an error")
	}
	// An Ed25519 verifier refuses HS256, even signed with its public key.
	a := newPair(t)
	ed := newVerifier(t, opts, a.key.Public())
	if _, err := ed.Verify(signed); err == nil {
		t.Error("Ed25519 Verifier accepted an HS256 token")
	}
}

// TestVerifyRejects pins RFC 8725's checks: one case per way a token can be wrong.
func TestVerifyRejects(t *testing.T) {
	a, other := newPair(t), newPair(t)
	v := newVerifier(t, opts, a.key.Public())
	kid := map[string]any{"kid": a.key.ID}
	good := sign(t, jwt.SigningMethodEdDSA, kid, valid(), a.priv)
	if _, err := v.Verify(good); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	parts := strings.Split(good, ".")
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, valid()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"auth.service","aud":"app","sub":"admin","iat":` +
		itoa(now.Unix()) + `,"exp":` + itoa(now.Add(time.Hour).Unix()) + `}`))
	pub := []byte(a.priv.Public().(ed25519.PublicKey))
	edSign := func(header map[string]any, claims jwt.MapClaims) string {
		h := map[string]any{"kid": a.key.ID}
		for k, v := range header {
			h[k] = v
		}
		return sign(t, jwt.SigningMethodEdDSA, h, claims, a.priv)
	}
	// Ed25519 signatures are 64 bytes, 86 base64url characters: the last
	// one's low 4 bits are unused. Flipping one decodes to the same bytes
	// leniently; strictly, it is refused.
	last := parts[2][len(parts[2])-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	nonCanonical := parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(alphabet[strings.IndexByte(alphabet, last)^1])

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"alg none", none, "algorithm"},
		{"alg none, empty signature kept", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".", "algorithm"},
		{"HS384", sign(t, jwt.SigningMethodHS384, kid, valid(), secret), "algorithm"},
		{"ES256", sign(t, jwt.SigningMethodES256, kid, valid(), ecKey), "algorithm"},
		{"HS256 keyed with the public key (alg confusion)", sign(t, jwt.SigningMethodHS256, kid, valid(), pub), "algorithm"},
		{"another key under the key's kid", sign(t, jwt.SigningMethodEdDSA, kid, valid(), other.priv), "signature"},
		{"another key, its own kid", sign(t, jwt.SigningMethodEdDSA, map[string]any{"kid": other.key.ID}, valid(), other.priv), "unknown_key"},
		{"no kid", sign(t, jwt.SigningMethodEdDSA, nil, valid(), a.priv), "unknown_key"},
		{"kid not a string", edSign(map[string]any{"kid": 7}, valid()), "unknown_key"},
		{"typ other than JWT", edSign(map[string]any{"typ": "at+jwt"}, valid()), "header"},
		{"typ absent", edSign(map[string]any{"typ": nil}, valid()), "header"},
		{"crit header", edSign(map[string]any{"crit": []string{"exp"}}, valid()), "header"},
		{"non-canonical base64url", nonCanonical, "malformed"},
		{"padded base64url", parts[0] + "." + parts[1] + "." + parts[2] + "==", "malformed"},
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], "signature"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), "signature"},
		{"expired", edSign(nil, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), "expired"},
		{"missing exp", edSign(nil, with(func(c jwt.MapClaims) { delete(c, "exp") })), "missing_claim"},
		{"future nbf", edSign(nil, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), "not_yet_valid"},
		{"future iat", edSign(nil, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), "not_yet_valid"},
		{"wrong issuer", edSign(nil, with(func(c jwt.MapClaims) { c["iss"] = "evil" })), "issuer"},
		{"missing issuer", edSign(nil, with(func(c jwt.MapClaims) { delete(c, "iss") })), "missing_claim"},
		{"wrong audience", edSign(nil, with(func(c jwt.MapClaims) { c["aud"] = "other" })), "audience"},
		{"missing audience", edSign(nil, with(func(c jwt.MapClaims) { delete(c, "aud") })), "missing_claim"},
		{"missing sub", edSign(nil, with(func(c jwt.MapClaims) { delete(c, "sub") })), "missing_claim"},
		{"garbage", "not-a-token", "malformed"},
		{"empty", "", "malformed"},
		{"two segments", parts[0] + "." + parts[1], "malformed"},
	}
	for _, cached := range []bool{false, true} {
		o := opts
		if cached {
			o.CacheSize = 100
		}
		v := newVerifier(t, o, a.key.Public())
		if _, err := v.Verify(good); err != nil { // cached, with the claims every forgery copies
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := v.Verify(tt.token)
				if err == nil {
					t.Fatalf("Verify(%s), cache %v = %+v, nil; want an error", tt.name, cached, c)
				}
				if !errorsIs(err, token.ErrInvalid) {
					t.Errorf("Verify(%s) error = %v, want it to wrap token.ErrInvalid", tt.name, err)
				}
				if got := token.Reason(err); got != tt.reason {
					t.Errorf("Reason(Verify(%s) error %v) = %q, want %q", tt.name, err, got, tt.reason)
				}
			})
		}
	}
}

func TestVerifyLeeway(t *testing.T) {
	a := newPair(t)
	v := newVerifier(t, opts, a.key.Public())
	within := sign(t, jwt.SigningMethodEdDSA, map[string]any{"kid": a.key.ID}, with(func(c jwt.MapClaims) {
		c["exp"] = now.Add(-token.Leeway + time.Second).Unix()
		c["iat"] = now.Add(token.Leeway - time.Second).Unix()
	}), a.priv)
	if _, err := v.Verify(within); err != nil {
		t.Errorf("Verify(token %v past exp, inside the leeway) error = %v, want nil", token.Leeway-time.Second, err)
	}
	if token.Leeway > 30*time.Second {
		t.Errorf("Leeway = %v, want at most 30s (RFC 8725 asks for little)", token.Leeway)
	}
}

// TestCache: a cached token is still checked for time on every use, a
// changed token is never served from the cache, the cache stays bounded,
// and a retired key's tokens are forgotten.
func TestCache(t *testing.T) {
	a, b := newPair(t), newPair(t)
	at := now
	o := opts
	o.CacheSize = 10
	o.Now = func() time.Time { return at }
	v := newVerifier(t, o, a.key.Public(), b.key.Public())
	ia := newIssuer(t, a.key)
	tok, _, err := ia.Issue("user", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil || v.CacheLen() != 1 {
		t.Fatalf("Verify(issued) = %v, cache len %d; want nil, 1", err, v.CacheLen())
	}
	parts := strings.Split(tok, ".")
	tampered := parts[0] + "." + parts[1] + "." + parts[2][:10] + strings.Repeat("A", len(parts[2])-10)
	if _, err := v.Verify(tampered); token.Reason(err) != "signature" {
		t.Errorf("Verify(tampered copy of a cached token) error = %v, want a bad signature", err)
	}
	if v.CacheLen() != 1 {
		t.Errorf("cache len after a rejected token = %d, want 1: only verified tokens enter", v.CacheLen())
	}

	at = now.Add(time.Hour + token.Leeway + time.Second)
	if _, err := v.Verify(tok); token.Reason(err) != "expired" {
		t.Errorf("Verify(cached token) after exp = %v, want expired", err)
	}
	if v.CacheLen() != 0 {
		t.Errorf("cache len after the token expired = %d, want 0", v.CacheLen())
	}
	at = now

	// Bounded: 3× the size in distinct tokens.
	for range 30 {
		tk, _, _ := ia.Issue("user", "")
		if _, err := v.Verify(tk); err != nil {
			t.Fatal(err)
		}
		if n := v.CacheLen(); n > 10 {
			t.Fatalf("cache len = %d, want at most 10", n)
		}
	}
	// Retiring a key forgets its tokens, and refuses them.
	ib := newIssuer(t, b.key)
	tb, _, _ := ib.Issue("user", "")
	if _, err := v.Verify(tb); err != nil {
		t.Fatal(err)
	}
	if err := v.SetKeys([]token.Key{b.key.Public()}); err != nil {
		t.Fatal(err)
	}
	if n := v.CacheLen(); n != 1 {
		t.Errorf("cache len after retiring key A = %d, want 1: only B's token", n)
	}
	if _, err := v.Verify(tok); token.Reason(err) != "unknown_key" {
		t.Errorf("Verify(A's token) after A was retired = %v, want unknown_key", err)
	}
	if _, err := v.Verify(tb); err != nil {
		t.Errorf("Verify(B's token) after A was retired = %v, want nil", err)
	}
}

func TestIssuerNeedsPrivateKey(t *testing.T) {
	a := newPair(t)
	if _, err := token.NewIssuer(a.key.Public(), opts); err == nil {
		t.Error("NewIssuer(public key only) error = nil, want an error: a verifier's key cannot sign")
	}
	i := newIssuer(t, a.key)
	if err := i.SetKey(a.key.Public()); err == nil || i.KeyID() != a.key.ID {
		t.Errorf("SetKey(public key only) = %v, key now %s; want an error and the old key kept", err, i.KeyID())
	}
}

func TestOptionsRefused(t *testing.T) {
	a := newPair(t)
	for _, tt := range []struct {
		name string
		opts token.Options
	}{
		{"no issuer", token.Options{Audience: "a", TTL: time.Minute}},
		{"no audience", token.Options{Issuer: "i", TTL: time.Minute}},
		{"negative cache", token.Options{Issuer: "i", Audience: "a", TTL: time.Minute, CacheSize: -1}},
	} {
		if _, err := token.NewVerifier([]token.Key{a.key}, tt.opts); err == nil {
			t.Errorf("NewVerifier(%s) error = nil, want an error", tt.name)
		}
	}
	if _, err := token.NewIssuer(a.key, token.Options{Issuer: "i", Audience: "a"}); err == nil {
		t.Error("NewIssuer(zero TTL) error = nil, want an error")
	}
	if _, err := token.NewVerifier(nil, opts); err == nil {
		t.Error("NewVerifier(no keys) error = nil, want an error")
	}
}

func TestReasonsListsEveryReason(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range token.Reasons {
		seen[r] = true
	}
	for _, r := range []string{"malformed", "algorithm", "unknown_key", "header", "signature", "expired", "not_yet_valid", "issuer", "audience", "missing_claim", "other"} {
		if !seen[r] {
			t.Errorf("Reasons lacks %q", r)
		}
	}
}

// BenchmarkVerify: the cost of verifying one token: Ed25519 seen for the
// first time (no cache), Ed25519 served from the cache, and HS256 as the
// service verified it before (no cache).
func BenchmarkVerify(b *testing.B) {
	a := newPair(b)
	hk, err := token.HMACKey(secret)
	if err != nil {
		b.Fatal(err)
	}
	live := opts
	live.Now = time.Now
	cached := live
	cached.CacheSize = 4096
	for _, bb := range []struct {
		name string
		key  token.Key
		opts token.Options
	}{
		{"ed25519-first-sight", a.key, live},
		{"ed25519-cached", a.key, cached},
		{"hs256-previous", hk, live},
	} {
		b.Run(bb.name, func(b *testing.B) {
			i, err := token.NewIssuer(bb.key, live)
			if err != nil {
				b.Fatal(err)
			}
			signed, _, err := i.Issue("user", "user@example.com")
			if err != nil {
				b.Fatal(err)
			}
			v := newVerifier(b, bb.opts, bb.key)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(signed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheMemory fills a verifier's cache with distinct tokens, 3×
// its size, and reports the live heap it holds: bounded by the size.
func BenchmarkCacheMemory(b *testing.B) {
	a := newPair(b)
	o := opts
	o.Now = time.Now
	o.CacheSize = 4096
	i, err := token.NewIssuer(a.key, o)
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, 3*o.CacheSize)
	for n := range tokens {
		if tokens[n], _, err = i.Issue("user", "user@example.com"); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		v := newVerifier(b, o, a.key)
		for _, t := range tokens {
			if _, err := v.Verify(t); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-held")
		b.ReportMetric(float64(v.CacheLen()), "entries")
		runtime.KeepAlive(v)
	}
}
