package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"example.com/app/internal/metrics"
	"example.com/app/internal/respond"
	"example.com/app/internal/token"
)

type claimsKey struct{}

// ClaimsFrom returns the verified claims RequireToken put in ctx.
func ClaimsFrom(ctx context.Context) (*token.Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*token.Claims)
	return c, ok
}

// Answers to a request without a valid token. Every rejected token gets the
// same body: the reason is for the operator (token_rejections_total), not
// for whoever is probing.
var (
	noToken      = []string{`Bearer realm="app"`}
	invalidToken = []string{`Bearer realm="app", error="invalid_token"`}
)

// errNoToken: the request carries no bearer token at all (RFC 6750 §3.1:
// answer without an error code).
var errNoToken = errors.New("no bearer token")

// RequireToken serves next only to requests whose Authorization header holds
// a bearer token verifier accepts; the claims are in the request's context
// (ClaimsFrom). Others get 401. The token is read from the header only,
// never from the URL or a form, where it would end up in logs and histories.
func RequireToken(verifier *token.Verifier, m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := BearerToken(r.Header.Values("Authorization"))
		if errors.Is(err, errNoToken) {
			m.TokenRejected(metrics.RejectMissing)
			w.Header()["Www-Authenticate"] = noToken
			respond.Error(w, http.StatusUnauthorized, "missing bearer token")
			return
		}
		var claims *token.Claims
		if err == nil {
			claims, err = verifier.Verify(raw)
		}
		if err != nil {
			m.TokenRejected(token.Reason(err))
			w.Header()["Www-Authenticate"] = invalidToken
			respond.Error(w, http.StatusUnauthorized, "invalid token")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, claims)))
	})
}

// JWKS serves the public keys verifier accepts as a JWK Set (RFC 7517), so
// that gateways and other services can verify the app's tokens. Clients may
// cache it for five minutes: a new key is published well before it signs
// (see cmd/keys), and an old one stays published until its tokens expire.
func JWKS(verifier *token.Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		respond.Raw(w, http.StatusOK, verifier.JWKS())
	})
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header,
// given all the request's Authorization header values. It returns
// token.ErrMalformed for a malformed header, and a different error when
// there is no bearer token at all (no header, or another scheme such as Basic).
func BearerToken(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", errNoToken
	case 1:
	default:
		return "", token.ErrMalformed // two Authorization headers: ambiguous, so refused
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", errNoToken
	}
	raw := strings.TrimLeft(rest, " ")
	if raw == "" || !isToken68(raw) {
		return "", token.ErrMalformed
	}
	return raw, nil
}

// isToken68 reports whether s is RFC 7235's token68: a JWT's base64url
// segments and dots fit; spaces, commas and quotes do not.
func isToken68(s string) bool {
	trailing := false // "=" may only end the token
	for i := range len(s) {
		c := s[i]
		switch {
		case c == '=':
			trailing = true
		case trailing:
			return false
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return s[0] != '='
}
