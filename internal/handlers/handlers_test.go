package handlers_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"example.com/app/internal/handlers"
	"example.com/app/internal/limit"
	"example.com/app/internal/metrics"
	"example.com/app/internal/token"
	"example.com/app/internal/user"
)

var hmacSecret = []byte("0123456789abcdef0123456789abcdef")

// signingKey is the fixture's Ed25519 key, as a token.Key and as the raw
// private key a test forges with.
var signingKey, signingPriv = func() (token.Key, ed25519.PrivateKey) {
	k, err := token.GenerateEd25519()
	if err != nil {
		panic(err)
	}
	b, err := token.MarshalPrivateKey(k)
	if err != nil {
		panic(err)
	}
	block, _ := pem.Decode(b)
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	return k, priv.(ed25519.PrivateKey)
}()

type fixture struct {
	api      http.Handler
	verifier *token.Verifier
	metrics  *metrics.Metrics
	limits   *handlers.LoginLimits
}

// users has the demo user, user/password, hashed at bcrypt's lowest cost so
// that the tests' many logins stay fast under the race detector.
var users = func() *user.Store {
	h, err := bcrypt.GenerateFromPassword([]byte("password"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	s, err := user.Parse(strings.NewReader("user:" + string(h) + ":user@example.com\n"))
	if err != nil {
		panic(err)
	}
	return s
}()

// newAPI builds the monolith's routes from the handlers, as the binaries do.
func newAPI(t *testing.T) fixture {
	t.Helper()
	opts := token.Options{Issuer: "auth.service", Audience: "app", TTL: time.Hour, CacheSize: 100}
	issuer, err := token.NewIssuer(signingKey, opts)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := token.NewVerifier([]token.Key{signingKey.Public()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Build{Service: "test", Version: "1.0.0", Commit: "abc"}, token.Reasons)
	limits := handlers.DefaultLoginLimits([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	// The same limits as the default, but with no refill during the test:
	// bcrypt under -race is slow enough for a 6-second refill to matter.
	limits.Networks = limit.NewKeyed(10, time.Hour, 10_000)
	limits.Pairs = limit.NewKeyed(5, time.Hour, 10_000)
	r := mux.NewRouter()
	r.Handle("/", handlers.Hello()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/login", handlers.Login(zap.NewNop(), users, issuer, limits, m)).Methods(http.MethodGet, http.MethodPost)
	r.Handle("/secure", handlers.RequireToken(verifier, m, handlers.Hello())).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/.well-known/jwks.json", handlers.JWKS(verifier)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/version", handlers.Version(handlers.Build{Service: "test", Version: "1.0.0", Commit: "abc"})).Methods(http.MethodGet, http.MethodHead)
	r.NotFoundHandler = handlers.NotFound()
	r.MethodNotAllowedHandler = handlers.MethodNotAllowed(r)
	return fixture{api: r, verifier: verifier, metrics: m, limits: limits}
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body, err)
	}
}

func TestHelloAndVersion(t *testing.T) {
	f := newAPI(t)
	rec := serve(f.api, httptest.NewRequest(http.MethodGet, "/", nil))
	var hello struct {
		Message string
		User    *string
	}
	decode(t, rec, &hello)
	if rec.Code != http.StatusOK || hello.Message != "Hello" || hello.User != nil {
		t.Errorf("GET / = %d %s, want 200 {\"message\":\"Hello\"}", rec.Code, rec.Body)
	}

	rec = serve(f.api, httptest.NewRequest(http.MethodGet, "/version", nil))
	var v struct{ Service, Version, Commit string }
	decode(t, rec, &v)
	if rec.Code != http.StatusOK || v.Service != "test" || v.Version != "1.0.0" || v.Commit != "abc" {
		t.Errorf("GET /version = %d %s, want 200 with service, version and commit", rec.Code, rec.Body)
	}

	if rec := serve(f.api, httptest.NewRequest(http.MethodHead, "/version", nil)); rec.Code != http.StatusOK {
		t.Errorf("HEAD /version = %d, want 200 (curl -sI during a rollout)", rec.Code)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	f := newAPI(t)
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{http.MethodGet, "/nope", http.StatusNotFound, ""},
		{http.MethodGet, "/secure/", http.StatusNotFound, ""},
		{http.MethodDelete, "/version", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodPost, "/secure", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodPut, "/login", http.StatusMethodNotAllowed, "GET, POST"},
	}
	for _, tt := range tests {
		rec := serve(f.api, httptest.NewRequest(tt.method, tt.path, nil))
		var body struct{ Error string }
		decode(t, rec, &body)
		if rec.Code != tt.want || body.Error == "" {
			t.Errorf("%s %s = %d %s, want %d with a JSON error", tt.method, tt.path, rec.Code, rec.Body, tt.want)
		}
		if got := rec.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func login(t *testing.T, f fixture) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.SetBasicAuth("user", "password")
	rec := serve(f.api, req)
	var body struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	decode(t, rec, &body)
	if rec.Code != http.StatusOK || body.Token == "" {
		t.Fatalf("POST /login as user/password = %d %s, want 200 with a token", rec.Code, rec.Body)
	}
	exp, err := time.Parse(time.RFC3339, body.ExpiresAt)
	if err != nil || exp.Before(time.Now().Add(59*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
		t.Errorf("POST /login expires_at = %q, want RFC 3339 about an hour from now", body.ExpiresAt)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("POST /login Cache-Control = %q, want no-store", cc)
	}
	return body.Token
}

func TestLogin(t *testing.T) {
	f := newAPI(t)
	login(t, f)

	get := httptest.NewRequest(http.MethodGet, "/login", nil)
	get.SetBasicAuth("user", "password")
	if rec := serve(f.api, get); rec.Code != http.StatusOK {
		t.Errorf("GET /login as user/password = %d, want 200 (the course uses curl -u)", rec.Code)
	}

	// Unknown user and wrong password: the same answer, byte for byte.
	var bodies []string
	for _, tt := range []struct{ name, user, password string }{
		{"wrong password", "user", "wrong"},
		{"unknown user", "nobody", "password"},
		{"password over 72 bytes", "user", "password" + strings.Repeat("x", 70)},
	} {
		req := httptest.NewRequest(http.MethodPost, "/login", nil)
		req.SetBasicAuth(tt.user, tt.password)
		rec := serve(f.api, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("POST /login with %s = %d, want 401", tt.name, rec.Code)
		}
		if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="app"`) {
			t.Errorf("POST /login with %s: WWW-Authenticate = %q, want Basic realm=\"app\"", tt.name, got)
		}
		bodies = append(bodies, rec.Body.String())
	}
	if bodies[0] != bodies[1] || bodies[0] != bodies[2] {
		t.Errorf("POST /login answers differ: %q, want one answer for every wrong credential", bodies)
	}

	rec := serve(f.api, httptest.NewRequest(http.MethodPost, "/login", nil))
	var body struct{ Error string }
	decode(t, rec, &body)
	if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" || body.Error == "" {
		t.Errorf("POST /login without credentials = %d %s, want 401 with a challenge and a JSON error", rec.Code, rec.Body)
	}

	for outcome, want := range map[string]float64{
		metrics.LoginSuccess: 2, metrics.LoginBadCredentials: 2, metrics.LoginPasswordTooLong: 1, metrics.LoginMissingCredentials: 1,
	} {
		if got := testutil.ToFloat64(f.metrics.LoginCounter(outcome)); got != want {
			t.Errorf("login_attempts_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

func TestLoginRateLimits(t *testing.T) {
	f := newAPI(t)
	attempt := func(user, password, peer, realIP string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/login", nil)
		req.SetBasicAuth(user, password)
		req.RemoteAddr = net.JoinHostPort(peer, "1234")
		if realIP != "" {
			req.Header.Set("X-Real-IP", realIP)
		}
		return serve(f.api, req)
	}
	// Per user name and client network: 5 failures, then that network may
	// not try that name, even with the right password (or guessing could go on).
	for i := range 5 {
		if rec := attempt("user", "wrong", "192.0.2.1", ""); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failed login %d = %d, want 401", i+1, rec.Code)
		}
	}
	rec := attempt("user", "password", "192.0.2.1", "")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("login after 5 failures for one user from one address = %d (Retry-After %q), want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}

	// Per client: behind a trusted proxy (10.0.0.0/8 here) X-Real-IP is the
	// client, so one client's failures do not lock out the proxy's other clients.
	for i := range 10 {
		if rec := attempt("guess"+string(rune('a'+i)), "x", "10.1.1.1", "198.51.100.7"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failed login %d from 198.51.100.7 = %d, want 401", i+1, rec.Code)
		}
	}
	if rec := attempt("other", "x", "10.1.1.1", "198.51.100.7"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("11th failure from one client = %d, want 429", rec.Code)
	}
	if rec := attempt("other", "x", "10.1.1.1", "198.51.100.8"); rec.Code != http.StatusUnauthorized {
		t.Errorf("another client behind the same proxy = %d, want 401 (not limited)", rec.Code)
	}
	// An untrusted peer cannot dodge the limit by naming another client.
	for i := range 10 {
		attempt("spoof"+string(rune('a'+i)), "x", "203.0.113.5", "198.51.100."+string(rune('0'+i)))
	}
	if rec := attempt("spoofz", "x", "203.0.113.5", "198.51.100.200"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("untrusted peer with a fresh X-Real-IP after 10 failures = %d, want 429", rec.Code)
	}
	// IPv6: one /64 is one client, directly and behind the proxy.
	for _, tt := range []struct{ peer, realIP, next, other string }{
		{"2001:db8:1:1::1", "", "2001:db8:1:1::ffff", "2001:db8:1:2::1"},
		{"10.1.1.1", "2001:db8:2:1::1", "2001:db8:2:1:abcd::1", "2001:db8:2:2::1"},
	} {
		from := func(i int) (string, string) {
			if tt.realIP != "" {
				return tt.peer, strings.Replace(tt.realIP, "::1", "::"+strconv.Itoa(i+1), 1)
			}
			return strings.Replace(tt.peer, "::1", "::"+strconv.Itoa(i+1), 1), ""
		}
		for i := range 10 {
			peer, realIP := from(i)
			attempt("v6guess"+strconv.Itoa(i), "x", peer, realIP)
		}
		peer, realIP := tt.peer, ""
		if tt.realIP != "" {
			realIP = tt.next
		} else {
			peer = tt.next
		}
		if rec := attempt("v6other", "x", peer, realIP); rec.Code != http.StatusTooManyRequests {
			t.Errorf("failure from %s%s after 10 from its /64 = %d, want 429", peer, realIP, rec.Code)
		}
		peer, realIP = tt.peer, ""
		if tt.realIP != "" {
			realIP = tt.other
		} else {
			peer = tt.other
		}
		if rec := attempt("v6other", "x", peer, realIP); rec.Code != http.StatusUnauthorized {
			t.Errorf("failure from %s%s, another /64 = %d, want 401", peer, realIP, rec.Code)
		}
	}
	if got := testutil.ToFloat64(f.metrics.LoginCounter(metrics.LoginRateLimited)); got < 5 {
		t.Errorf("login_attempts_total{outcome=rate_limited} = %v, want at least 5", got)
	}
}

// TestLoginNoLockout: an attacker failing 100 times for a user cannot keep
// the user, from another address, from logging in.
func TestLoginNoLockout(t *testing.T) {
	f := newAPI(t)
	codes := map[int]int{}
	for range 100 {
		req := httptest.NewRequest(http.MethodPost, "/login", nil)
		req.SetBasicAuth("user", "guess")
		req.RemoteAddr = "203.0.113.66:4000"
		codes[serve(f.api, req).Code]++
	}
	if codes[http.StatusUnauthorized] != 5 || codes[http.StatusTooManyRequests] != 95 {
		t.Errorf("100 failures for user from one address: %v, want 5×401 then 95×429", codes)
	}
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.SetBasicAuth("user", "password")
	req.RemoteAddr = "198.51.100.20:5000"
	if rec := serve(f.api, req); rec.Code != http.StatusOK {
		t.Errorf("the real user from another address during the attack = %d %s, want 200 at once", rec.Code, rec.Body)
	}
}

func TestLoginLongName(t *testing.T) {
	f := newAPI(t)
	for _, n := range []int{handlers.MaxNameSize + 1, 5 << 10} {
		req := httptest.NewRequest(http.MethodPost, "/login", nil)
		req.SetBasicAuth(strings.Repeat("n", n), "password")
		rec := serve(f.api, req)
		var body struct{ Error string }
		decode(t, rec, &body)
		if rec.Code != http.StatusBadRequest || body.Error == "" {
			t.Errorf("POST /login with a %d-byte name = %d %s, want 400 with a JSON error", n, rec.Code, rec.Body)
		}
	}
	if n := f.limits.Networks.Len() + f.limits.Pairs.Len(); n != 0 {
		t.Errorf("limiter keys after refused long names = %d, want 0: refused before any lookup", n)
	}
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.SetBasicAuth(strings.Repeat("n", handlers.MaxNameSize), "password")
	if rec := serve(f.api, req); rec.Code != http.StatusUnauthorized {
		t.Errorf("POST /login with a %d-byte unknown name = %d, want 401", handlers.MaxNameSize, rec.Code)
	}
}

// TestLoginSuccessLimit: successful logins are limited per client too,
// generously.
func TestLoginSuccessLimit(t *testing.T) {
	f := newAPI(t)
	f.limits.Successes = limit.NewKeyed(30, time.Hour, 100)
	login := func(peer string) int {
		req := httptest.NewRequest(http.MethodPost, "/login", nil)
		req.SetBasicAuth("user", "password")
		req.RemoteAddr = peer + ":1"
		return serve(f.api, req).Code
	}
	for i := range 30 {
		if code := login("192.0.2.50"); code != http.StatusOK {
			t.Fatalf("successful login %d = %d, want 200", i+1, code)
		}
	}
	if code := login("192.0.2.50"); code != http.StatusTooManyRequests {
		t.Errorf("31st successful login from one client = %d, want 429", code)
	}
	if code := login("192.0.2.51"); code != http.StatusOK {
		t.Errorf("login from another client = %d, want 200", code)
	}
}

func TestJWKS(t *testing.T) {
	f := newAPI(t)
	rec := serve(f.api, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use, D string }
	}
	decode(t, rec, &set)
	if rec.Code != http.StatusOK || len(set.Keys) != 1 {
		t.Fatalf("GET /.well-known/jwks.json = %d %s, want 200 with one key", rec.Code, rec.Body)
	}
	k := set.Keys[0]
	if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid != signingKey.ID || k.Alg != "EdDSA" || k.Use != "sig" || k.X == "" || k.D != "" {
		t.Errorf("JWKS key = %+v, want OKP Ed25519 EdDSA sig with kid %s and no private part", k, signingKey.ID)
	}
	if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("JWKS Cache-Control = %q, want a max-age", cc)
	}
}

func TestLoginBusy(t *testing.T) {
	f := newAPI(t)
	f.limits.Hashing = limit.NewGate(1, 0, time.Millisecond) // one check at a time, no queue
	leave, ok := f.limits.Hashing.Enter(t.Context())         // and it is taken
	if !ok {
		t.Fatal("Enter on an empty gate = false")
	}
	defer leave()
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.SetBasicAuth("user", "password")
	rec := serve(f.api, req)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("POST /login while every password check slot is taken = %d (Retry-After %q), want 429, Retry-After 1", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestSecure(t *testing.T) {
	f := newAPI(t)
	good := login(t, f)
	forge := func(method jwt.SigningMethod, claims jwt.MapClaims, k any) string {
		tok := jwt.NewWithClaims(method, claims)
		tok.Header["kid"] = signingKey.ID
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	other, err := token.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := token.MarshalPrivateKey(other)
	otherBlock, _ := pem.Decode(otherPEM)
	otherPriv, _ := x509.ParsePKCS8PrivateKey(otherBlock.Bytes)
	key := signingPriv
	now := time.Now()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "auth.service", "aud": "app", "sub": "user", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if change != nil {
			change(c)
		}
		return c
	}
	parts := strings.Split(good, ".")
	invalid := `Bearer realm="app", error="invalid_token"`

	tests := []struct {
		name          string
		authorization []string
		want          int
		challenge     string
		reason        string
	}{
		{"valid", []string{"Bearer " + good}, http.StatusOK, "", ""},
		{"lowercase scheme", []string{"bearer " + good}, http.StatusOK, "", ""},
		{"valid claims signed with the key", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(nil), key)}, http.StatusOK, "", ""},
		{"no header", nil, http.StatusUnauthorized, `Bearer realm="app"`, metrics.RejectMissing},
		{"basic scheme", []string{"Basic dXNlcjpwYXNzd29yZA=="}, http.StatusUnauthorized, `Bearer realm="app"`, metrics.RejectMissing},
		{"token without scheme", []string{good}, http.StatusUnauthorized, `Bearer realm="app"`, metrics.RejectMissing},
		{"empty bearer", []string{"Bearer "}, http.StatusUnauthorized, invalid, "malformed"},
		{"two headers", []string{"Bearer " + good, "Bearer " + good}, http.StatusUnauthorized, invalid, "malformed"},
		{"alg none", []string{"Bearer " + forge(jwt.SigningMethodNone, claims(nil), jwt.UnsafeAllowNoneSignatureType)}, http.StatusUnauthorized, invalid, "algorithm"},
		{"HS512", []string{"Bearer " + forge(jwt.SigningMethodHS512, claims(nil), hmacSecret)}, http.StatusUnauthorized, invalid, "algorithm"},
		{"HS256 keyed with the public key", []string{"Bearer " + forge(jwt.SigningMethodHS256, claims(nil), []byte(signingPriv.Public().(ed25519.PublicKey)))}, http.StatusUnauthorized, invalid, "algorithm"},
		{"wrong key", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(nil), otherPriv)}, http.StatusUnauthorized, invalid, "signature"},
		{"unknown kid", []string{"Bearer " + func() string {
			tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims(nil))
			tok.Header["kid"] = other.ID
			s, _ := tok.SignedString(otherPriv)
			return s
		}()}, http.StatusUnauthorized, invalid, "unknown_key"},
		{"tampered payload", []string{"Bearer " + parts[0] + "." + strings.TrimSuffix(parts[1], parts[1][len(parts[1])-2:]) + "AA." + parts[2]}, http.StatusUnauthorized, invalid, ""},
		{"expired", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), key)}, http.StatusUnauthorized, invalid, "expired"},
		{"missing exp", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { delete(c, "exp") }), key)}, http.StatusUnauthorized, invalid, "missing_claim"},
		{"future nbf", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), key)}, http.StatusUnauthorized, invalid, "not_yet_valid"},
		{"future iat", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), key)}, http.StatusUnauthorized, invalid, "not_yet_valid"},
		{"wrong issuer", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }), key)}, http.StatusUnauthorized, invalid, "issuer"},
		{"missing issuer", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { delete(c, "iss") }), key)}, http.StatusUnauthorized, invalid, "missing_claim"},
		{"wrong audience", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { c["aud"] = "other" }), key)}, http.StatusUnauthorized, invalid, "audience"},
		{"missing audience", []string{"Bearer " + forge(jwt.SigningMethodEdDSA, claims(func(c jwt.MapClaims) { delete(c, "aud") }), key)}, http.StatusUnauthorized, invalid, "missing_claim"},
		{"garbage", []string{"Bearer not.a.jwt"}, http.StatusUnauthorized, invalid, "malformed"},
		{"token with a space", []string{"Bearer abc def"}, http.StatusUnauthorized, invalid, "malformed"},
	}
	var rejected []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/secure", nil)
			for _, v := range tt.authorization {
				req.Header.Add("Authorization", v)
			}
			var before float64
			if tt.reason != "" {
				before = testutil.ToFloat64(f.metrics.RejectionCounter(tt.reason))
			}
			rec := serve(f.api, req)
			if rec.Code != tt.want {
				t.Fatalf("GET /secure with %s = %d %s, want %d", tt.name, rec.Code, rec.Body, tt.want)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("GET /secure with %s: WWW-Authenticate = %q, want %q", tt.name, got, tt.challenge)
			}
			var body struct{ Message, User, Error string }
			decode(t, rec, &body)
			if tt.want == http.StatusOK {
				if body.Message != "Hello" || body.User != "user" {
					t.Errorf("GET /secure with %s = %s, want {\"message\":\"Hello\",\"user\":\"user\"}", tt.name, rec.Body)
				}
				return
			}
			if tt.reason != "" {
				if got := testutil.ToFloat64(f.metrics.RejectionCounter(tt.reason)) - before; got != 1 {
					t.Errorf("token_rejections_total{reason=%q} went up by %v, want 1", tt.reason, got)
				}
			}
			if tt.challenge == invalid {
				rejected = append(rejected, rec.Body.String())
			}
		})
	}
	for _, b := range rejected {
		if b != rejected[0] {
			t.Errorf("rejected tokens got different bodies: %q and %q; want one body for every reason", rejected[0], b)
		}
	}
}

func TestSecureIgnoresTokenInURL(t *testing.T) {
	f := newAPI(t)
	good := login(t, f)
	for _, target := range []string{"/secure?access_token=" + good, "/secure?token=" + good} {
		if rec := serve(f.api, httptest.NewRequest(http.MethodGet, target, nil)); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %.30s… = %d, want 401: tokens are read from the header only", target, rec.Code)
		}
	}
	form := httptest.NewRequest(http.MethodGet, "/secure", strings.NewReader("access_token="+good))
	form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := serve(f.api, form); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /secure with the token in a form = %d, want 401", rec.Code)
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		remote, realIP, forwarded, want string
	}{
		{"203.0.113.1:5000", "", "", "203.0.113.1"},
		{"203.0.113.1:5000", "198.51.100.1", "", "203.0.113.1"}, // untrusted peer: header ignored
		{"127.0.0.1:5000", "198.51.100.1", "", "198.51.100.1"},
		{"[::1]:5000", "198.51.100.1", "", "198.51.100.1"},
		{"127.0.0.1:5000", "", "192.0.2.9, 198.51.100.2", "198.51.100.2"}, // the hop the proxy saw
		{"127.0.0.1:5000", "garbage", "", "127.0.0.1"},
		{"127.0.0.1:5000", "", "", "127.0.0.1"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = tt.remote
		if tt.realIP != "" {
			req.Header.Set("X-Real-IP", tt.realIP)
		}
		if tt.forwarded != "" {
			req.Header.Set("X-Forwarded-For", tt.forwarded)
		}
		if got := handlers.ClientIP(req, trusted); got != tt.want {
			t.Errorf("ClientIP(from %s, X-Real-IP %q, X-Forwarded-For %q) = %q, want %q", tt.remote, tt.realIP, tt.forwarded, got, tt.want)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
	f.Add("bearer  abc")
	f.Add("Basic dXNlcjpwYXNzd29yZA==")
	f.Add("Bearer =abc")
	f.Add("Bearer abc==")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		raw, err := handlers.BearerToken([]string{header})
		if err != nil {
			if raw != "" {
				t.Errorf("BearerToken(%q) = %q, %v; want no token with an error", header, raw, err)
			}
			return
		}
		if raw == "" || strings.ContainsAny(raw, " \t\r\n,\"") {
			t.Errorf("BearerToken(%q) = %q, want a non-empty token68", header, raw)
		}
		if !strings.HasSuffix(header, raw) {
			t.Errorf("BearerToken(%q) = %q, not the end of the header", header, raw)
		}
	})
}

func TestClientNetwork(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	tests := []struct{ remote, realIP, want string }{
		{"203.0.113.1:5000", "", "203.0.113.1"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "", "2001:db8:1:2::/64"},
		{"[::ffff:203.0.113.9]:5000", "", "203.0.113.9"},
		{"127.0.0.1:5000", "2001:db8:9:9:abcd::1", "2001:db8:9:9::/64"},
		{"127.0.0.1:5000", "198.51.100.1", "198.51.100.1"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = tt.remote
		if tt.realIP != "" {
			req.Header.Set("X-Real-IP", tt.realIP)
		}
		if got := handlers.ClientNetwork(req, trusted); got != tt.want {
			t.Errorf("ClientNetwork(from %s, X-Real-IP %q) = %q, want %q", tt.remote, tt.realIP, got, tt.want)
		}
	}
}
