package token_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/testbin"
	"example.com/app/internal/token"
)

// TestThumbprint: RFC 8037 Appendix A.3's Ed25519 key has the thumbprint
// the RFC gives.
func TestThumbprint(t *testing.T) {
	set := []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`)
	keys, err := token.ParsePublicKeys(set)
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; keys[0].ID != want {
		t.Errorf("ID of RFC 8037's example key = %s, want %s", keys[0].ID, want)
	}
}

func TestKeyFormats(t *testing.T) {
	a, b := newPair(t), newPair(t)
	priv, err := token.MarshalPrivateKey(a.key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := token.ParsePrivateKey(priv)
	if err != nil || k.ID != a.key.ID || !k.CanSign() {
		t.Fatalf("ParsePrivateKey(MarshalPrivateKey(a)) = %s, %v; want a's key, able to sign", k.ID, err)
	}
	pemSet, err := token.MarshalPublicKeys([]token.Key{a.key, b.key})
	if err != nil {
		t.Fatal(err)
	}
	jwks := newVerifier(t, opts, a.key, b.key).JWKS()
	for name, data := range map[string][]byte{"PEM": pemSet, "JWK Set": jwks} {
		keys, err := token.ParsePublicKeys(data)
		if err != nil || len(keys) != 2 || keys[0].ID != a.key.ID || keys[1].ID != b.key.ID {
			t.Errorf("ParsePublicKeys(%s) = %v, %v; want a and b", name, keys, err)
			continue
		}
		if keys[0].CanSign() || keys[1].CanSign() {
			t.Errorf("ParsePublicKeys(%s): a key can sign, want public keys only", name)
		}
	}
	for _, want := range []string{`"kty":"OKP"`, `"crv":"Ed25519"`, `"alg":"EdDSA"`, `"use":"sig"`, `"kid":"` + a.key.ID + `"`} {
		if !bytes.Contains(jwks, []byte(want)) {
			t.Errorf("JWKS = %s, lacks %s", jwks, want)
		}
	}
	if bytes.Contains(jwks, []byte(`"d"`)) {
		t.Errorf("JWKS = %s, has a private part", jwks)
	}

	spki, _ := x509.MarshalPKIXPublicKey(a.priv.Public().(ed25519.PublicKey))
	rsaLike := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: spki})
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "no keys"},
		{"private key in the public set", string(priv), `"PRIVATE KEY", want "PUBLIC KEY"`},
		{"wrong PEM type", string(rsaLike), `"RSA PUBLIC KEY"`},
		{"trailing text", string(pemSet) + "junk", "not a PEM block"},
		{"JWK with d", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"x"}]}`, "private part"},
		{"JWK of another type", `{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}`, "want OKP Ed25519"},
		{"JWK with a wrong kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"mine"}]}`, "not the key's RFC 7638 thumbprint"},
		{"JWK with alg HS256", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"HS256"}]}`, "want EdDSA"},
		{"JWK with a short x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, "x is not 32"},
		{"empty JWK Set", `{"keys":[]}`, "no keys"},
		{"bad JSON", `{"keys":`, "JWK Set"},
	}
	for _, tt := range tests {
		if _, err := token.ParsePublicKeys([]byte(tt.data)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePublicKeys(%s) error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := token.ParsePrivateKey(pemSet); err == nil {
		t.Error("ParsePrivateKey(public keys) error = nil, want an error")
	}
}

func pemPublic(t *testing.T, keys ...token.Key) []byte {
	t.Helper()
	b, err := token.MarshalPublicKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemPrivate(t *testing.T, k token.Key) []byte {
	t.Helper()
	b, err := token.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWatch rotates keys through real files swapped like a Secret volume
// and a Verifier and an Issuer fed by Watch: A; then {A, B} with B
// signing; then B alone. A bad file in between keeps the keys.
func TestWatch(t *testing.T) {
	a, b := newPair(t), newPair(t)
	vol := &testbin.SecretVolume{Dir: t.TempDir()}
	vol.Write(t, map[string][]byte{"private.pem": pemPrivate(t, a.key), "public.pem": pemPublic(t, a.key)})
	files := token.KeyFiles{Private: vol.Path("private.pem"), Public: vol.Path("public.pem")}
	ks, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	o := opts
	o.CacheSize = 100
	o.Now = time.Now
	iss, err := token.NewIssuer(*ks.Signing, o)
	if err != nil {
		t.Fatal(err)
	}
	ver := newVerifier(t, o, ks.Accept...)
	applied := make(chan []string, 10)
	failed := make(chan error, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		files.Watch(ctx, 10*time.Millisecond, ks, func(ks token.Keys) error {
			if err := ver.SetKeys(ks.Accept); err != nil {
				return err
			}
			if err := iss.SetKey(*ks.Signing); err != nil {
				return err
			}
			var ids []string
			for _, k := range ks.Accept {
				ids = append(ids, k.ID)
			}
			applied <- ids
			return nil
		}, func(err error) { failed <- err })
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string) []string {
		t.Helper()
		select {
		case ids := <-applied:
			return ids
		case err := <-failed:
			t.Fatalf("%s: reload failed: %v", what, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no reload within 5s", what)
		}
		return nil
	}
	issue := func() string {
		t.Helper()
		s, _, err := iss.Issue("user", "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	oldTok := issue()
	if _, err := ver.Verify(oldTok); err != nil {
		t.Fatalf("Verify(A's token) = %v", err)
	}
	// 1. Publish B; A still signs.
	vol.Write(t, map[string][]byte{"private.pem": pemPrivate(t, a.key), "public.pem": pemPublic(t, a.key, b.key)})
	if ids := wait("publishing B"); len(ids) != 2 {
		t.Errorf("keys after publishing B = %v, want A and B", ids)
	}
	// 2. B signs; A's tokens keep working.
	vol.Write(t, map[string][]byte{"private.pem": pemPrivate(t, b.key), "public.pem": pemPublic(t, a.key, b.key)})
	wait("switching to B")
	if iss.KeyID() != b.key.ID {
		t.Errorf("signing key after the switch = %s, want B %s", iss.KeyID(), b.key.ID)
	}
	newTok := issue()
	for name, tok := range map[string]string{"A's (old)": oldTok, "B's (new)": newTok} {
		if _, err := ver.Verify(tok); err != nil {
			t.Errorf("Verify(%s token) during the rotation = %v, want nil", name, err)
		}
	}
	// A broken file: reported, the keys stay.
	vol.Write(t, map[string][]byte{"private.pem": pemPrivate(t, b.key), "public.pem": []byte("not a key")})
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "JWT_PUBLIC_KEYS_FILE") {
			t.Errorf("reload error = %v, want it to name JWT_PUBLIC_KEYS_FILE", err)
		}
	case ids := <-applied:
		t.Fatalf("a broken key file was applied: %v", ids)
	case <-time.After(5 * time.Second):
		t.Fatal("a broken key file was not reported within 5s")
	}
	if _, err := ver.Verify(oldTok); err != nil {
		t.Errorf("Verify(A's token) after a failed reload = %v, want nil: the old keys stay", err)
	}
	// 3. Retire A.
	vol.Write(t, map[string][]byte{"private.pem": pemPrivate(t, b.key), "public.pem": pemPublic(t, b.key)})
	wait("retiring A")
	if _, err := ver.Verify(oldTok); token.Reason(err) != "unknown_key" {
		t.Errorf("Verify(A's token) after A was retired = %v, want unknown_key", err)
	}
	if _, err := ver.Verify(newTok); err != nil {
		t.Errorf("Verify(B's token) after A was retired = %v, want nil", err)
	}
}

func TestWriteKeyPair(t *testing.T) {
	dir := t.TempDir()
	f, k, err := token.WriteKeyPair(dir)
	if err != nil {
		t.Fatalf("WriteKeyPair(%s) error = %v", dir, err)
	}
	ks, err := f.Load()
	if err != nil {
		t.Fatalf("loading what WriteKeyPair wrote: %v", err)
	}
	if ks.Signing == nil || ks.Signing.ID != k.ID || len(ks.Accept) != 1 || ks.Accept[0].ID != k.ID {
		t.Errorf("WriteKeyPair's files hold signing key %v and accept %v, want key %s in both", ks.Signing, ks.Accept, k.ID)
	}
	for name, want := range map[string]os.FileMode{f.Private: 0o600, f.Public: 0o644} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
}

// TestWatchSeesAChangeBeforeItStarted swaps the files between the caller's
// Load and Watch, as the kubelet can while a pod starts during a rotation:
// Watch applies the new keys at once, though the files never change again.
func TestWatchSeesAChangeBeforeItStarted(t *testing.T) {
	a, b := newPair(t), newPair(t)
	vol := &testbin.SecretVolume{Dir: t.TempDir()}
	vol.Write(t, map[string][]byte{"public.pem": pemPublic(t, a.key)})
	files := token.KeyFiles{Public: vol.Path("public.pem")}
	loaded, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	vol.Write(t, map[string][]byte{"public.pem": pemPublic(t, a.key, b.key)})
	applied := make(chan token.Keys, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go files.Watch(ctx, time.Hour, loaded, func(ks token.Keys) error { applied <- ks; return nil },
		func(err error) { t.Errorf("Watch: %v", err) })
	select {
	case ks := <-applied:
		if len(ks.Accept) != 2 || ks.Accept[1].ID != b.key.ID {
			t.Errorf("Watch applied %d keys, want A and B", len(ks.Accept))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not apply the keys that changed before it started")
	}
}
