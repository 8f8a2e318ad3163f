package token_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"example.com/app/internal/token"
)

var (
	key   = []byte("0123456789abcdef0123456789abcdef") // 32 bytes: the minimum
	now   = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock = func() time.Time { return now }
)

func newSigner(t *testing.T) *token.Signer {
	t.Helper()
	s, err := token.NewSigner(key, token.Options{Issuer: "auth.service", Audience: "app", TTL: time.Hour, Now: clock})
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

// sign makes a token with any claims, algorithm and key, as an attacker or a
// misconfigured issuer could.
func sign(t *testing.T, method jwt.SigningMethod, claims jwt.MapClaims, k any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(k)
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
	s := newSigner(t)
	signed, expires, err := s.Issue("user", "user@example.com")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if want := now.Add(time.Hour); !expires.Equal(want) {
		t.Errorf("Issue expires = %v, want %v", expires, want)
	}
	c, err := s.Verify(signed)
	if err != nil {
		t.Fatalf("Verify(issued token) error = %v, want nil", err)
	}
	if c.Subject != "user" || c.Email != "user@example.com" || c.Issuer != "auth.service" ||
		len(c.Audience) != 1 || c.Audience[0] != "app" || c.ID == "" ||
		c.IssuedAt == nil || c.NotBefore == nil || !c.ExpiresAt.Time.Equal(now.Add(time.Hour)) {
		t.Errorf("Verify(issued token) claims = %+v, want every claim set", c)
	}
	other, _, err := s.Issue("user", "")
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	oc, _ := s.Verify(other)
	if oc.ID == c.ID {
		t.Errorf("two tokens share jti %q, want a fresh one each", c.ID)
	}
}

// TestVerifyRejects pins RFC 8725's checks: one case per way a token can be wrong.
func TestVerifyRejects(t *testing.T) {
	s := newSigner(t)
	good := sign(t, jwt.SigningMethodHS256, valid(), key)
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

	tests := []struct {
		name   string
		token  string
		reason string
	}{
		{"alg none", none, "algorithm"},
		{"alg none, empty signature kept", parts[0][:0] + base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".", "algorithm"},
		{"HS384", sign(t, jwt.SigningMethodHS384, valid(), key), "algorithm"},
		{"ES256", sign(t, jwt.SigningMethodES256, valid(), ecKey), "algorithm"},
		{"wrong key", sign(t, jwt.SigningMethodHS256, valid(), []byte("another key that is 32 bytes lon")), "signature"},
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], "signature"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), "signature"},
		{"expired", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), key), "expired"},
		{"missing exp", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "exp") }), key), "missing_claim"},
		{"future nbf", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }), key), "not_yet_valid"},
		{"future iat", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }), key), "not_yet_valid"},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["iss"] = "evil" }), key), "issuer"},
		{"missing issuer", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "iss") }), key), "missing_claim"},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { c["aud"] = "other" }), key), "audience"},
		{"missing audience", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "aud") }), key), "missing_claim"},
		{"missing sub", sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) { delete(c, "sub") }), key), "missing_claim"},
		{"garbage", "not-a-token", "malformed"},
		{"empty", "", "malformed"},
		{"two segments", parts[0] + "." + parts[1], "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.Verify(tt.token)
			if err == nil {
				t.Fatalf("Verify(%s) = %+v, nil; want an error", tt.name, c)
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

func TestVerifyLeeway(t *testing.T) {
	s := newSigner(t)
	within := sign(t, jwt.SigningMethodHS256, with(func(c jwt.MapClaims) {
		c["exp"] = now.Add(-token.Leeway + time.Second).Unix()
		c["iat"] = now.Add(token.Leeway - time.Second).Unix()
	}), key)
	if _, err := s.Verify(within); err != nil {
		t.Errorf("Verify(token %v past exp, inside the leeway) error = %v, want nil", token.Leeway-time.Second, err)
	}
	if token.Leeway > 30*time.Second {
		t.Errorf("Leeway = %v, want at most 30s (RFC 8725 asks for little)", token.Leeway)
	}
}

func TestNewSignerRefuses(t *testing.T) {
	good := token.Options{Issuer: "i", Audience: "a", TTL: time.Minute}
	tests := []struct {
		name string
		key  []byte
		opts token.Options
	}{
		{"short key", key[:31], good},
		{"no issuer", key, token.Options{Audience: "a", TTL: time.Minute}},
		{"no audience", key, token.Options{Issuer: "i", TTL: time.Minute}},
		{"zero TTL", key, token.Options{Issuer: "i", Audience: "a"}},
	}
	for _, tt := range tests {
		if _, err := token.NewSigner(tt.key, tt.opts); err == nil {
			t.Errorf("NewSigner(%s) error = nil, want an error", tt.name)
		}
	}
}

func TestReasonsListsEveryReason(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range token.Reasons {
		seen[r] = true
	}
	for _, r := range []string{"malformed", "algorithm", "signature", "expired", "not_yet_valid", "issuer", "audience", "missing_claim", "other"} {
		if !seen[r] {
			t.Errorf("Reasons lacks %q", r)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s, err := token.NewSigner(key, token.Options{Issuer: "auth.service", Audience: "app", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	signed, _, err := s.Issue("user", "user@example.com")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(signed); err != nil {
			b.Fatal(err)
		}
	}
}
