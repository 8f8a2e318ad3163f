package config_test

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/config"
	"example.com/app/internal/fault"
	"example.com/app/internal/token"
)

const secret = "0123456789abcdef0123456789abcdef" // 32 bytes

// keyFiles writes an Ed25519 private key and a public key set holding its
// public key and another one, and returns their paths.
func keyFiles(t *testing.T) (private, public string, signing, other token.Key) {
	t.Helper()
	dir := t.TempDir()
	var err error
	if signing, err = token.GenerateEd25519(); err != nil {
		t.Fatal(err)
	}
	if other, err = token.GenerateEd25519(); err != nil {
		t.Fatal(err)
	}
	priv, err := token.MarshalPrivateKey(signing)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := token.MarshalPublicKeys([]token.Key{signing, other})
	if err != nil {
		t.Fatal(err)
	}
	private, public = filepath.Join(dir, "private.pem"), filepath.Join(dir, "public.pem")
	if err := os.WriteFile(private, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	return private, public, signing, other
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func parse(t *testing.T, needs config.Needs, vars map[string]string, args ...string) (*config.Config, string, error) {
	t.Helper()
	var stderr bytes.Buffer
	c, err := config.Parse(append([]string{"svc"}, args...), env(vars), &stderr, needs)
	return c, stderr.String(), err
}

func TestDefaults(t *testing.T) {
	private, _, signing, _ := keyFiles(t)
	c, _, err := parse(t, config.Login, map[string]string{"JWT_PRIVATE_KEY_FILE": private, "DEMO_USER": "true"})
	if err != nil {
		t.Fatalf("Parse with only JWT_PRIVATE_KEY_FILE and DEMO_USER: %v", err)
	}
	want := config.Config{
		HTTPAddr: ":8080", HealthAddr: ":8081", LogLevel: "info", LogFormat: "json",
		ShutdownDrain: 5 * time.Second, ShutdownTimeout: 20 * time.Second,
	}
	if c.HTTPAddr != want.HTTPAddr || c.HealthAddr != want.HealthAddr || c.LogLevel != want.LogLevel ||
		c.LogFormat != want.LogFormat || c.ShutdownDrain != want.ShutdownDrain || c.ShutdownTimeout != want.ShutdownTimeout {
		t.Errorf("defaults = %+v, want %+v", c, want)
	}
	if c.Token.TTL != time.Hour || c.Token.Issuer != "auth.service" || c.Token.Audience != "app" {
		t.Errorf("token defaults = %+v, want 1h, auth.service, app", c.Token)
	}
	if c.Keys.Signing == nil || c.Keys.Signing.ID != signing.ID || len(c.Keys.Accept) != 1 || c.Keys.Accept[0].ID != signing.ID ||
		c.KeysGenerated || c.HS256 || c.Dev || c.UsersFile != "" || !c.DemoUser || c.Fault.Kind != fault.None {
		t.Errorf("defaults = %+v, want the file's key, signing and accepted, no dev mode, the demo user, no fault", c)
	}
	if c.KeysReload != 5*time.Second || c.Token.CacheSize != 4096 || c.KeyFiles.Private != private {
		t.Errorf("defaults: reload %v, cache %d, files %+v; want 5s, 4096, the private key file", c.KeysReload, c.Token.CacheSize, c.KeyFiles)
	}
	if len(c.TrustedProxies) != 2 || !c.TrustedProxies[0].Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Errorf("TrustedProxies = %v, want loopback", c.TrustedProxies)
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	vars := map[string]string{
		"JWT_SECRET": secret, "HTTP_ADDR": "127.0.0.1:1", "HEALTH_ADDR": "127.0.0.1:2",
		"KEYS_RELOAD_INTERVAL": "1s", "TOKEN_CACHE_SIZE": "7",
		"USERS_FILE": "/etc/users", "TOKEN_TTL": "5m", "TOKEN_ISSUER": "iss", "TOKEN_AUDIENCE": "aud",
		"LOG_LEVEL": "debug", "LOG_FORMAT": "console", "SHUTDOWN_DRAIN": "1s", "SHUTDOWN_TIMEOUT": "2s",
		"TRUSTED_PROXIES": "10.0.0.0/8", "FAULT": "latency=200ms",
	}
	c, _, err := parse(t, config.Login, vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:1" || c.HealthAddr != "127.0.0.1:2" || c.UsersFile != "/etc/users" ||
		c.Token.TTL != 5*time.Minute || c.Token.Issuer != "iss" || c.Token.Audience != "aud" ||
		c.LogLevel != "debug" || c.LogFormat != "console" || c.ShutdownDrain != time.Second ||
		c.ShutdownTimeout != 2*time.Second || c.TrustedProxies[0].String() != "10.0.0.0/8" ||
		c.Fault.Kind != fault.Latency || c.Fault.Duration != 200*time.Millisecond ||
		c.KeysReload != time.Second || c.Token.CacheSize != 7 || !c.HS256 {
		t.Errorf("from the environment: %+v, want every variable applied", c)
	}
	// The flag wins over the environment.
	c, _, err = parse(t, config.Login, vars, "-http", "127.0.0.1:3", "-health=127.0.0.1:4", "-token-ttl=1m",
		"-shutdown-drain=0s", "-users-file=/other", "-log-level=warn")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:3" || c.HealthAddr != "127.0.0.1:4" || c.Token.TTL != time.Minute ||
		c.ShutdownDrain != 0 || c.UsersFile != "/other" || c.LogLevel != "warn" {
		t.Errorf("flags over the environment: %+v, want the flags' values", c)
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := token.HMACKey([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := parse(t, 0, map[string]string{"JWT_SECRET_FILE": file})
	if err != nil || !c.HS256 || len(c.Keys.Accept) != 1 || c.Keys.Accept[0].ID != want.ID || c.Keys.Signing != nil {
		t.Errorf("JWT_SECRET_FILE with a trailing newline: %v, %+v; want the key without the newline, verifying only", err, c)
	}
	c, _, err = parse(t, config.Login, map[string]string{"DEMO_USER": "true"}, "-jwt-secret-file", file)
	if err != nil || c.Keys.Signing == nil || c.Keys.Signing.ID != want.ID {
		t.Errorf("-jwt-secret-file on a login service: %v, %+v; want the key, signing", err, c)
	}
}

// TestKeyFiles: a verifier reads public keys only; a signer its private
// key, and the public set as well.
func TestKeyFiles(t *testing.T) {
	private, public, signing, other := keyFiles(t)
	c, _, err := parse(t, 0, map[string]string{"JWT_PUBLIC_KEYS_FILE": public})
	if err != nil || c.Keys.Signing != nil || len(c.Keys.Accept) != 2 || c.KeyFiles.Public != public {
		t.Fatalf("verifier with JWT_PUBLIC_KEYS_FILE: %v, %+v; want two keys accepted and none to sign with", err, c)
	}
	c, _, err = parse(t, config.Login, map[string]string{"JWT_PUBLIC_KEYS_FILE": public, "DEMO_USER": "true"}, "-jwt-private-key-file", private)
	if err != nil || c.Keys.Signing.ID != signing.ID || len(c.Keys.Accept) != 2 || c.Keys.Accept[1].ID != other.ID {
		t.Errorf("signer with both files: %v, %+v; want the private key signing and both accepted", err, c)
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	private, public, _, _ := keyFiles(t)
	ok := map[string]string{"JWT_SECRET": secret}
	plus := func(k, v string) map[string]string {
		m := map[string]string{"JWT_SECRET": secret, k: v}
		if k == "JWT_SECRET" {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		needs config.Needs
		vars  map[string]string
		args  []string
		want  string
	}{
		{"no keys", 0, nil, nil, "JWT_PUBLIC_KEYS_FILE is not set"},
		{"no keys, login service", config.Login, map[string]string{"DEMO_USER": "true"}, nil, "JWT_PRIVATE_KEY_FILE is not set"},
		{"private key on a verifier", 0, map[string]string{"JWT_PRIVATE_KEY_FILE": private, "JWT_PUBLIC_KEYS_FILE": public}, nil, "JWT_PRIVATE_KEY_FILE is set, but this service only verifies tokens"},
		{"secret and key files", 0, map[string]string{"JWT_SECRET": secret, "JWT_PUBLIC_KEYS_FILE": public}, nil, "set one kind"},
		{"missing private key file", config.Login, map[string]string{"JWT_PRIVATE_KEY_FILE": filepath.Join(dir, "nope"), "DEMO_USER": "true"}, nil, "JWT_PRIVATE_KEY_FILE: open"},
		{"public keys as private key", config.Login, map[string]string{"JWT_PRIVATE_KEY_FILE": public, "DEMO_USER": "true"}, nil, "JWT_PRIVATE_KEY_FILE " + public},
		{"bad public keys file", 0, map[string]string{"JWT_PUBLIC_KEYS_FILE": short}, nil, "JWT_PUBLIC_KEYS_FILE " + short},
		{"no users file", config.Login, map[string]string{"JWT_PRIVATE_KEY_FILE": private}, nil, "USERS_FILE is not set"},
		{"users file and demo user", config.Login, map[string]string{"JWT_PRIVATE_KEY_FILE": private, "USERS_FILE": short, "DEMO_USER": "true"}, nil, "both USERS_FILE and DEMO_USER"},
		{"bad demo user", config.Login, map[string]string{"JWT_PRIVATE_KEY_FILE": private, "DEMO_USER": "yes please"}, nil, `DEMO_USER="yes please"`},
		{"zero reload", 0, plus("KEYS_RELOAD_INTERVAL", "0s"), nil, "KEYS_RELOAD_INTERVAL is 0s"},
		{"bad cache size", 0, plus("TOKEN_CACHE_SIZE", "many"), nil, `TOKEN_CACHE_SIZE="many" is not a whole number`},
		{"negative cache size", 0, plus("TOKEN_CACHE_SIZE", "-1"), nil, "TOKEN_CACHE_SIZE is -1"},
		{"short secret", 0, plus("JWT_SECRET", "short"), nil, "JWT_SECRET is 5 bytes, want at least 32"},
		{"short secret file", 0, map[string]string{"JWT_SECRET_FILE": short}, nil, "holds 9 bytes, want at least 32"},
		{"missing secret file", 0, map[string]string{"JWT_SECRET_FILE": filepath.Join(dir, "nope")}, nil, "JWT_SECRET_FILE: open"},
		{"both secrets", 0, plus("JWT_SECRET_FILE", short), nil, "both JWT_SECRET and JWT_SECRET_FILE"},
		{"bad duration", 0, plus("SHUTDOWN_DRAIN", "5"), nil, `SHUTDOWN_DRAIN="5" is not a duration`},
		{"negative drain", 0, plus("SHUTDOWN_DRAIN", "-1s"), nil, "SHUTDOWN_DRAIN is -1s"},
		{"zero timeout", 0, plus("SHUTDOWN_TIMEOUT", "0s"), nil, "SHUTDOWN_TIMEOUT is 0s"},
		{"zero TTL", config.Login, map[string]string{"JWT_SECRET": secret, "DEMO_USER": "true", "TOKEN_TTL": "0s"}, nil, "TOKEN_TTL is 0s"},
		{"empty issuer", 0, ok, []string{"-token-issuer="}, "TOKEN_ISSUER is empty"},
		{"bad log level", 0, plus("LOG_LEVEL", "loud"), nil, `LOG_LEVEL is "loud"`},
		{"bad log format", 0, plus("LOG_FORMAT", "xml"), nil, `LOG_FORMAT is "xml"`},
		{"bad proxies", 0, plus("TRUSTED_PROXIES", "10.0.0.0"), nil, "TRUSTED_PROXIES"},
		{"bad fault", 0, plus("FAULT", "explode"), nil, `unknown fault "explode"`},
		{"bad dev mode", config.DevMode, plus("DEV_MODE", "maybe"), nil, `DEV_MODE="maybe" is not true or false`},
		{"unknown flag", 0, ok, []string{"-port=80"}, "flag provided but not defined: -port"},
		{"-dev on a service without it", 0, ok, []string{"-dev"}, "flag provided but not defined: -dev"},
		{"-users-file on hello", 0, ok, []string{"-users-file=x"}, "flag provided but not defined: -users-file"},
		{"stray argument", 0, ok, []string{"extra"}, `unexpected arguments ["extra"]`},
	}
	for _, tt := range tests {
		_, _, err := parse(t, tt.needs, tt.vars, tt.args...)
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse with %s: error = %v, want ErrInvalid containing %q", tt.name, err, tt.want)
		}
	}
}

func TestDevMode(t *testing.T) {
	c, _, err := parse(t, config.Login|config.DevMode, nil, "-dev")
	if err != nil {
		t.Fatalf("Parse -dev without keys or users: %v", err)
	}
	if !c.Dev || !c.KeysGenerated || c.Keys.Signing == nil || !c.Keys.Signing.CanSign() || c.HS256 || c.ShutdownDrain != 0 {
		t.Errorf("-dev: %+v, want a generated Ed25519 key and no drain", c)
	}
	c2, _, _ := parse(t, config.Login|config.DevMode, map[string]string{"DEV_MODE": "true"})
	if !c2.Dev || c2.Keys.Signing == nil || c2.Keys.Signing.ID == c.Keys.Signing.ID {
		t.Errorf("DEV_MODE=true: dev %v, want dev mode with a fresh key each time", c2.Dev)
	}
	c, _, _ = parse(t, config.Login|config.DevMode, map[string]string{"SHUTDOWN_DRAIN": "3s"}, "-dev")
	if c.ShutdownDrain != 3*time.Second {
		t.Errorf("-dev with SHUTDOWN_DRAIN=3s: drain %v, want 3s (set explicitly)", c.ShutdownDrain)
	}
	c, _, _ = parse(t, config.DevMode, map[string]string{"JWT_SECRET": secret}, "-dev")
	if c.KeysGenerated || !c.HS256 {
		t.Error("-dev with JWT_SECRET set: generated a key, want the one given")
	}
}

func TestHelp(t *testing.T) {
	_, usage, err := parse(t, config.Login|config.DevMode, nil, "-h")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse -h error = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-http", "HTTP_ADDR", "-health", "HEALTH_ADDR", "JWT_SECRET", "JWT_SECRET_FILE",
		"JWT_PRIVATE_KEY_FILE", "JWT_PUBLIC_KEYS_FILE", "KEYS_RELOAD_INTERVAL", "TOKEN_CACHE_SIZE", "DEMO_USER",
		"USERS_FILE", "TOKEN_TTL", "TOKEN_ISSUER", "TOKEN_AUDIENCE", "LOG_LEVEL", "LOG_FORMAT", "SHUTDOWN_DRAIN",
		"SHUTDOWN_TIMEOUT", "DEV_MODE", "TRUSTED_PROXIES", "FAULT"} {
		if !strings.Contains(usage, want) {
			t.Errorf("-h output lacks %s:\n%s", want, usage)
		}
	}
}
