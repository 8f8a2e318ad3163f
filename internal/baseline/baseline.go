// Package baseline holds the independent baselines the services are
// measured against: what a bare net/http server does for hello's two
// routes. It shares no code with the services on purpose: a baseline that
// called the project's token, handler or middleware packages would carry
// their cost and hide it. cmd/baseline serves them as processes of their
// own for `make bench-http`; hello's in-process benchmarks call them.
package baseline

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

var greeting = []byte(`{"message":"Hello"}` + "\n")

// Plain answers hello's greeting.
func Plain() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(greeting) //nolint:errcheck // the client went away
	})
}

// JWT answers hello's greeting to the subject of the request's bearer
// token, after verifying it on every request as golang-jwt's documentation
// shows: the algorithm (EdDSA, key's type), the signature, issuer, audience
// and expiry. Others get 401.
func JWT(key any, issuer, audience string) http.Handler {
	type claims struct {
		Email string `json:"email"`
		jwt.RegisteredClaims
	}
	type response struct {
		Message string `json:"message"`
		User    string `json:"user"`
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(issuer),
		jwt.WithAudience(audience), jwt.WithExpirationRequired())
	keyFunc := func(*jwt.Token) (any, error) { return key, nil }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var c claims
		if _, err := parser.ParseWithClaims(raw, &c, keyFunc); !ok || err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid token"}` + "\n")) //nolint:errcheck // as above
			return
		}
		body, _ := json.Marshal(response{"Hello", c.Subject}) // strings always encode
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(body, '\n')) //nolint:errcheck // as above
	})
}
