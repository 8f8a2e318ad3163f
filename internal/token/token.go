// Package token issues and verifies the app's JSON Web Tokens.
//
// Tokens are HS256-signed and carry iss, aud, sub, email, iat, nbf, exp and jti.
// Verification is strict, following RFC 8725: only HS256 is accepted, issuer,
// audience and expiry are required and checked, and the clock leeway is small.
// The package does not import net/http: reading the token from a request is the
// handlers' job.
package token

import (
	"crypto/rand"
	"errors"
	"fmt"
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

// errAlgorithm marks a token signed with anything but HS256, "none" included.
var errAlgorithm = errors.New("algorithm is not HS256")

// Options are a Signer's settings other than its key.
type Options struct {
	Issuer   string        // the iss claim issued and required
	Audience string        // the aud claim issued and required
	TTL      time.Duration // how long an issued token is valid

	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Claims are the claims of the app's tokens.
type Claims struct {
	Email string `json:"email,omitempty"`
	jwt.RegisteredClaims
}

// Signer issues tokens and verifies them with one HS256 key.
type Signer struct {
	key    []byte
	opts   Options
	parser *jwt.Parser
}

// NewSigner returns a Signer using key, which must be at least MinKeySize bytes.
func NewSigner(key []byte, opts Options) (*Signer, error) {
	switch {
	case len(key) < MinKeySize:
		return nil, fmt.Errorf("token: key is %d bytes, want at least %d", len(key), MinKeySize)
	case opts.Issuer == "":
		return nil, errors.New("token: issuer is empty")
	case opts.Audience == "":
		return nil, errors.New("token: audience is empty")
	case opts.TTL <= 0:
		return nil, fmt.Errorf("token: TTL is %v, want more than 0", opts.TTL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(opts.Issuer),
		jwt.WithAudience(opts.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(opts.Now),
	)
	return &Signer{key: key, opts: opts, parser: parser}, nil
}

// Issue returns a signed token for the user named subject, and when it expires.
func (s *Signer) Issue(subject, email string) (string, time.Time, error) {
	now := s.opts.Now().Truncate(time.Second)
	expires := now.Add(s.opts.TTL)
	claims := Claims{
		Email: email,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.opts.Issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{s.opts.Audience},
			ExpiresAt: jwt.NewNumericDate(expires),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: signing: %w", err)
	}
	return signed, expires, nil
}

// Verify checks a token's signature and claims and returns its claims.
// Every error wraps ErrInvalid; Reason tells them apart for metrics.
func (s *Signer) Verify(signed string) (*Claims, error) {
	var claims Claims
	tok, err := s.parser.ParseWithClaims(signed, &claims, s.keyFunc)
	if err != nil {
		if tok != nil && tok.Header["alg"] != jwt.SigningMethodHS256.Alg() {
			err = fmt.Errorf("%w: %w", errAlgorithm, err) // jwt reports it as a bad signature
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if claims.Subject == "" {
		return nil, fmt.Errorf("%w: %w: sub", ErrInvalid, jwt.ErrTokenRequiredClaimMissing)
	}
	return &claims, nil
}

func (s *Signer) keyFunc(*jwt.Token) (any, error) { return s.key, nil }

// Reason names why Verify rejected a token, in a few fixed words fit for a
// metric label: "malformed", "algorithm", "signature", "expired",
// "not_yet_valid", "issuer", "audience", "missing_claim" or "other".
func Reason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
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
var Reasons = []string{"malformed", "algorithm", "signature", "expired", "not_yet_valid", "issuer", "audience", "missing_claim", "other"}
