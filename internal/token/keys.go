package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// The algorithms a Key can have. A key's algorithm is the key's, never the
// token's: a token naming another one is refused.
const (
	EdDSA = "EdDSA" // Ed25519 (RFC 8037): the default
	HS256 = "HS256" // a shared secret: every verifier could also sign
)

// Key is a key that verifies tokens and, if it holds a private part, signs
// them. Its ID is its RFC 7638 JWK thumbprint, so operators never pick one
// and the same key has the same ID everywhere.
type Key struct {
	ID        string
	Algorithm string // EdDSA or HS256

	public  any // ed25519.PublicKey, or the HS256 secret ([]byte)
	private any // ed25519.PrivateKey, the HS256 secret, or nil: verify only
}

// CanSign reports whether k holds a private part.
func (k Key) CanSign() bool { return k.private != nil }

// Public returns k without its private part. An HS256 key has no public
// part: its secret is both.
func (k Key) Public() Key {
	if k.Algorithm == EdDSA {
		k.private = nil
	}
	return k
}

func (k Key) method() jwt.SigningMethod {
	if k.Algorithm == HS256 {
		return jwt.SigningMethodHS256
	}
	return jwt.SigningMethodEdDSA
}

// GenerateEd25519 returns a new Ed25519 key pair.
func GenerateEd25519() (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("token: generating an Ed25519 key: %w", err)
	}
	return ed25519Key(pub, priv), nil
}

func ed25519Key(pub ed25519.PublicKey, priv ed25519.PrivateKey) Key {
	k := Key{ID: thumbprint(okp{Crv: "Ed25519", Kty: "OKP", X: b64(pub)}), Algorithm: EdDSA, public: pub}
	if priv != nil {
		k.private = priv
	}
	return k
}

// HMACKey returns an HS256 key from a shared secret of at least MinKeySize bytes.
func HMACKey(secret []byte) (Key, error) {
	if len(secret) < MinKeySize {
		return Key{}, fmt.Errorf("token: HS256 key is %d bytes, want at least %d", len(secret), MinKeySize)
	}
	// RFC 7638 §3.2: an oct key's thumbprint covers k and kty.
	id := thumbprint(struct {
		K   string `json:"k"`
		Kty string `json:"kty"`
	}{b64(secret), "oct"})
	return Key{ID: id, Algorithm: HS256, public: secret, private: secret}, nil
}

// okp is an RFC 8037 Octet Key Pair public key's required members, in the
// lexicographic order RFC 7638 hashes them in.
type okp struct {
	Crv string `json:"crv"`
	Kty string `json:"kty"`
	X   string `json:"x"`
}

func thumbprint(members any) string {
	b, err := json.Marshal(members)
	if err != nil {
		panic(err) // strings always encode
	}
	sum := sha256.Sum256(b)
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// ParsePrivateKey reads an Ed25519 private key from a PKCS#8 PEM block
// ("PRIVATE KEY"), as `openssl genpkey -algorithm ed25519` and cmd/keys write.
func ParsePrivateKey(data []byte) (Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("no PEM block: want a PKCS#8 \"PRIVATE KEY\"")
	}
	if block.Type != "PRIVATE KEY" {
		return Key{}, fmt.Errorf("PEM block is %q, want a PKCS#8 \"PRIVATE KEY\"", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return Key{}, errors.New("more than one PEM block: want one private key")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("parsing the PKCS#8 private key: %w", err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return Key{}, fmt.Errorf("private key is a %T, want Ed25519", parsed)
	}
	return ed25519Key(priv.Public().(ed25519.PublicKey), priv), nil
}

// ParsePublicKeys reads a set of Ed25519 public keys: either PEM blocks of
// SPKI public keys ("PUBLIC KEY"), or a JWK Set (RFC 7517) of OKP keys as
// /.well-known/jwks.json serves. A JWK's kid, if any, must be its thumbprint.
func ParsePublicKeys(data []byte) ([]Key, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJWKS(trimmed)
	}
	var keys []Key
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("PEM block %d is %q, want \"PUBLIC KEY\" (a private key does not belong in a public key set)", n, block.Type)
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		pub, ok := parsed.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d is a %T public key, want Ed25519", n, parsed)
		}
		keys = append(keys, ed25519Key(pub, nil))
	}
	if len(bytes.TrimSpace(data)) > 0 {
		return nil, errors.New("text that is not a PEM block after the keys")
	}
	if len(keys) == 0 {
		return nil, errors.New(`no keys: want "PUBLIC KEY" PEM blocks or a JWK Set`)
	}
	return keys, nil
}

// jwk is a JSON Web Key's members this package reads and writes.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	D   string `json:"d,omitempty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

func parseJWKS(data []byte) ([]Key, error) {
	var set jwks
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("JWK Set: %w", err)
	}
	var keys []Key
	for i, j := range set.Keys {
		switch {
		case j.Kty != "OKP" || j.Crv != "Ed25519":
			return nil, fmt.Errorf("JWK %d is kty %q crv %q, want OKP Ed25519", i, j.Kty, j.Crv)
		case j.D != "":
			return nil, fmt.Errorf("JWK %d has a private part (d): a public key set must not", i)
		case j.Alg != "" && j.Alg != EdDSA:
			return nil, fmt.Errorf("JWK %d has alg %q, want EdDSA", i, j.Alg)
		case j.Use != "" && j.Use != "sig":
			return nil, fmt.Errorf("JWK %d has use %q, want sig", i, j.Use)
		}
		x, err := base64.RawURLEncoding.Strict().DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("JWK %d: x is not %d base64url bytes", i, ed25519.PublicKeySize)
		}
		k := ed25519Key(ed25519.PublicKey(x), nil)
		if j.Kid != "" && j.Kid != k.ID {
			return nil, fmt.Errorf("JWK %d: kid %q is not the key's RFC 7638 thumbprint %q", i, j.Kid, k.ID)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWK Set has no keys")
	}
	return keys, nil
}

// JWKS returns the Ed25519 keys among keys as a JWK Set (RFC 7517, RFC 8037).
// HS256 keys are left out: their secret must never be published.
func JWKS(keys []Key) []byte {
	set := jwks{Keys: []jwk{}}
	for _, k := range keys {
		if pub, ok := k.public.(ed25519.PublicKey); ok && k.Algorithm == EdDSA {
			set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: b64(pub), Kid: k.ID, Alg: EdDSA, Use: "sig"})
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic(err) // strings always encode
	}
	return append(b, '\n')
}

// MarshalPrivateKey returns k's private key as PKCS#8 PEM.
func MarshalPrivateKey(k Key) ([]byte, error) {
	priv, ok := k.private.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("token: not an Ed25519 private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeys returns the Ed25519 keys among keys as SPKI PEM blocks.
func MarshalPublicKeys(keys []Key) ([]byte, error) {
	var out []byte
	for _, k := range keys {
		pub, ok := k.public.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("token: key %s is not Ed25519", k.ID)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out, nil
}

// KeyFiles name the files a service reads its keys from. Kubernetes mounts
// them from Secrets and swaps them in place when a Secret changes.
type KeyFiles struct {
	Private string // JWT_PRIVATE_KEY_FILE: the signing key; empty for verifiers
	Public  string // JWT_PUBLIC_KEYS_FILE: more keys to accept, e.g. the previous and the next
}

// Keys are a service's keys: the one it signs with, if any, and the set it
// accepts, which includes the signing key's public part.
type Keys struct {
	Signing *Key
	Accept  []Key
}

// Load reads the files. The error names the setting of the file at fault.
func (f KeyFiles) Load() (Keys, error) {
	var ks Keys
	if f.Private != "" {
		b, err := os.ReadFile(f.Private)
		if err != nil {
			return Keys{}, fmt.Errorf("JWT_PRIVATE_KEY_FILE: %w", err)
		}
		k, err := ParsePrivateKey(b)
		if err != nil {
			return Keys{}, fmt.Errorf("JWT_PRIVATE_KEY_FILE %s: %w", f.Private, err)
		}
		ks.Signing = &k
		ks.Accept = append(ks.Accept, k.Public())
	}
	if f.Public != "" {
		b, err := os.ReadFile(f.Public)
		if err != nil {
			return Keys{}, fmt.Errorf("JWT_PUBLIC_KEYS_FILE: %w", err)
		}
		keys, err := ParsePublicKeys(b)
		if err != nil {
			return Keys{}, fmt.Errorf("JWT_PUBLIC_KEYS_FILE %s: %w", f.Public, err)
		}
		for _, k := range keys {
			if !slices.ContainsFunc(ks.Accept, func(a Key) bool { return a.ID == k.ID }) {
				ks.Accept = append(ks.Accept, k)
			}
		}
	}
	return ks, nil
}

// The files WriteKeyPair writes, named as `make keys` names them.
const (
	PrivateKeyFile = "jwt-private.pem"
	PublicKeysFile = "jwt-public.pem"
)

// WriteKeyPair writes a new Ed25519 key pair into dir, which must exist:
// the private key as PKCS#8 PEM (PrivateKeyFile, mode 0600) and a public key
// set holding its public key (PublicKeysFile, mode 0644). It returns the
// files' names and the key. For throwaway keys (tests, `make up`); `make
// keys` keeps and rotates the long-lived ones.
func WriteKeyPair(dir string) (KeyFiles, Key, error) {
	k, err := GenerateEd25519()
	if err != nil {
		return KeyFiles{}, Key{}, err
	}
	priv, err := MarshalPrivateKey(k)
	if err != nil {
		return KeyFiles{}, Key{}, err
	}
	pub, err := MarshalPublicKeys([]Key{k})
	if err != nil {
		return KeyFiles{}, Key{}, err
	}
	f := KeyFiles{Private: filepath.Join(dir, PrivateKeyFile), Public: filepath.Join(dir, PublicKeysFile)}
	for _, file := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{f.Private, priv, 0o600}, {f.Public, pub, 0o644}} {
		if err := os.WriteFile(file.name, file.data, file.mode); err != nil {
			return KeyFiles{}, Key{}, fmt.Errorf("token: %w", err)
		}
		if err := os.Chmod(file.name, file.mode); err != nil { // whatever the umask
			return KeyFiles{}, Key{}, fmt.Errorf("token: %w", err)
		}
	}
	return f, k, nil
}
