// Package config reads a service's settings from flags, with environment
// variables as their defaults, and checks them before anything starts.
//
// Every flag has an environment equivalent and the flag wins. Keys come from
// files (JWT_PRIVATE_KEY_FILE, JWT_PUBLIC_KEYS_FILE), or for HS256 from
// JWT_SECRET or a file named by JWT_SECRET_FILE, never from an argument,
// which any user on the machine can read in the process list.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"example.com/app/internal/fault"
	"example.com/app/internal/token"
)

// ErrInvalid is wrapped by every error Parse returns for a bad setting.
// Binaries exit with status 2 for it.
var ErrInvalid = errors.New("invalid configuration")

// Needs says which optional parts of the configuration a service reads.
type Needs int

const (
	// Login: the service issues tokens, so it reads USERS_FILE, TOKEN_TTL,
	// DEMO_USER and its private key.
	Login Needs = 1 << iota
	// DevMode: the service accepts -dev.
	DevMode
)

// Config is every setting a service reads.
type Config struct {
	HTTPAddr   string // the app API's listen address
	HealthAddr string // the ops port's listen address: probes and /metrics
	Dev        bool   // dev mode: a random key if none is set, no drain

	Keys          token.Keys     // the keys read at start, or made up in dev mode
	KeyFiles      token.KeyFiles // where Keys were read from: re-read every KeysReload
	KeysGenerated bool           // dev mode made up Keys
	HS256         bool           // Keys are a shared secret (JWT_SECRET), not Ed25519
	KeysReload    time.Duration
	UsersFile     string // empty: the demo user if DemoUser (or Dev), else an error
	DemoUser      bool
	Token         token.Options

	LogLevel  string
	LogFormat string

	ShutdownDrain   time.Duration
	ShutdownTimeout time.Duration

	TrustedProxies []netip.Prefix // peers whose X-Real-IP/X-Forwarded-For is believed
	Fault          fault.Fault
}

// Parse reads the flags in args (args[0] is the program name) with defaults
// from getenv. Usage and errors go to stderr. It returns flag.ErrHelp for -h.
func Parse(args []string, getenv func(string) string, stderr io.Writer, needs Needs) (*Config, error) {
	// Services that only verify tokens never issue one; the TTL is for issuing.
	c := &Config{Token: token.Options{TTL: time.Hour}}
	env := envReader{getenv: getenv}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.HTTPAddr, "http", env.str("HTTP_ADDR", ":8080"), "`address` of the app API (env HTTP_ADDR)")
	fs.StringVar(&c.HealthAddr, "health", env.str("HEALTH_ADDR", ":8081"), "`address` of the probes and /metrics (env HEALTH_ADDR)")
	var privateFile string
	publicFile := fs.String("jwt-public-keys-file", env.str("JWT_PUBLIC_KEYS_FILE", ""), "`file` of Ed25519 public keys whose tokens are accepted: PEM \"PUBLIC KEY\" blocks or a JWK Set; re-read when it changes (env JWT_PUBLIC_KEYS_FILE)")
	secretFile := fs.String("jwt-secret-file", env.str("JWT_SECRET_FILE", ""), "`file` holding an HS256 shared key of at least 32 bytes, instead of Ed25519 keys: every service holding it can mint tokens, so only for first steps (env JWT_SECRET_FILE; or set the key itself in JWT_SECRET)")
	fs.DurationVar(&c.KeysReload, "keys-reload-interval", env.duration("KEYS_RELOAD_INTERVAL", 5*time.Second), "how often the key files are checked for changes (env KEYS_RELOAD_INTERVAL)")
	fs.IntVar(&c.Token.CacheSize, "token-cache-size", env.integer("TOKEN_CACHE_SIZE", 4096), "how many verified tokens are remembered, so each is verified once; 0 turns the cache off (env TOKEN_CACHE_SIZE)")
	if needs&DevMode != 0 {
		fs.BoolVar(&c.Dev, "dev", env.boolean("DEV_MODE"), "dev mode: make up a signing key if none is set, allow the demo user, and no shutdown drain (env DEV_MODE)")
	}
	if needs&Login != 0 {
		fs.StringVar(&privateFile, "jwt-private-key-file", env.str("JWT_PRIVATE_KEY_FILE", ""), "`file` holding the Ed25519 private key tokens are signed with, PKCS#8 PEM; re-read when it changes (env JWT_PRIVATE_KEY_FILE)")
		fs.StringVar(&c.UsersFile, "users-file", env.str("USERS_FILE", ""), "`file` of name:bcrypt-hash[:email] lines (env USERS_FILE)")
		fs.BoolVar(&c.DemoUser, "demo-user", env.boolean("DEMO_USER"), "without USERS_FILE, let the course's demo user user/password log in (env DEMO_USER)")
		fs.DurationVar(&c.Token.TTL, "token-ttl", env.duration("TOKEN_TTL", time.Hour), "how long issued tokens are valid (env TOKEN_TTL)")
	}
	fs.StringVar(&c.Token.Issuer, "token-issuer", env.str("TOKEN_ISSUER", "auth.service"), "the tokens' iss claim (env TOKEN_ISSUER)")
	fs.StringVar(&c.Token.Audience, "token-audience", env.str("TOKEN_AUDIENCE", "app"), "the tokens' aud claim (env TOKEN_AUDIENCE)")
	fs.StringVar(&c.LogLevel, "log-level", env.str("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env.str("LOG_FORMAT", "json"), "json or console (env LOG_FORMAT)")
	drain := fs.Duration("shutdown-drain", env.duration("SHUTDOWN_DRAIN", 5*time.Second), "how long readiness fails before the servers stop accepting; 0 in dev mode unless set (env SHUTDOWN_DRAIN)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", env.duration("SHUTDOWN_TIMEOUT", 20*time.Second), "how long in-flight requests may take to finish at shutdown (env SHUTDOWN_TIMEOUT)")
	proxies := fs.String("trusted-proxies", env.str("TRUSTED_PROXIES", "127.0.0.0/8,::1/128"), "comma-separated `CIDRs` of proxies whose X-Real-IP or X-Forwarded-For names the client (env TRUSTED_PROXIES)")
	faultSpec := fs.String("fault", env.str("FAULT", ""), "make this a deliberately bad release, for rollout lessons: never-ready, crash-on-start, slow-start=15s, error-rate=0.2 or latency=200ms (env FAULT)")

	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err) // the flag package has printed the usage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", ErrInvalid, fs.Args())
	}
	if env.err != nil {
		return nil, env.err
	}

	var err error
	if err = c.readKeys(needs, getenv, privateFile, *publicFile, *secretFile); err != nil {
		return nil, err
	}
	c.ShutdownDrain = *drain
	if c.Dev && !flagOrEnvSet(fs, "shutdown-drain", getenv, "SHUTDOWN_DRAIN") {
		c.ShutdownDrain = 0
	}
	if c.TrustedProxies, err = parsePrefixes(*proxies); err != nil {
		return nil, fmt.Errorf("%w: TRUSTED_PROXIES: %w", ErrInvalid, err)
	}
	if c.Fault, err = fault.Parse(*faultSpec); err != nil {
		return nil, fmt.Errorf("%w: FAULT: %w", ErrInvalid, err)
	}
	return c, c.check(needs)
}

func (c *Config) check(needs Needs) error {
	var problems []string
	if needs&Login != 0 && c.Token.TTL <= 0 {
		problems = append(problems, fmt.Sprintf("TOKEN_TTL is %v, want more than 0", c.Token.TTL))
	}
	if needs&Login != 0 && c.UsersFile == "" && !c.DemoUser && !c.Dev {
		problems = append(problems, "USERS_FILE is not set: name a file of name:bcrypt-hash[:email] lines (go run ./cmd/keys users makes one), or set DEMO_USER=true to let the course's demo user user/password log in")
	}
	if needs&Login != 0 && c.UsersFile != "" && c.DemoUser {
		problems = append(problems, "both USERS_FILE and DEMO_USER are set; set one")
	}
	if c.KeysReload <= 0 {
		problems = append(problems, fmt.Sprintf("KEYS_RELOAD_INTERVAL is %v, want more than 0", c.KeysReload))
	}
	if c.Token.CacheSize < 0 {
		problems = append(problems, fmt.Sprintf("TOKEN_CACHE_SIZE is %d, want 0 or more", c.Token.CacheSize))
	}
	if c.Token.Issuer == "" {
		problems = append(problems, "TOKEN_ISSUER is empty")
	}
	if c.Token.Audience == "" {
		problems = append(problems, "TOKEN_AUDIENCE is empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		problems = append(problems, fmt.Sprintf("LOG_LEVEL is %q, want debug, info, warn or error", c.LogLevel))
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		problems = append(problems, fmt.Sprintf("LOG_FORMAT is %q, want json or console", c.LogFormat))
	}
	if c.ShutdownDrain < 0 {
		problems = append(problems, fmt.Sprintf("SHUTDOWN_DRAIN is %v, want 0 or more", c.ShutdownDrain))
	}
	if c.ShutdownTimeout <= 0 {
		problems = append(problems, fmt.Sprintf("SHUTDOWN_TIMEOUT is %v, want more than 0", c.ShutdownTimeout))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// readKeys reads the keys: Ed25519 from JWT_PRIVATE_KEY_FILE (services that
// log users in) and JWT_PUBLIC_KEYS_FILE, or an HS256 secret from JWT_SECRET
// or JWT_SECRET_FILE, asked for explicitly. In dev mode with none, it makes
// up an Ed25519 key.
func (c *Config) readKeys(needs Needs, getenv func(string) string, privateFile, publicFile, secretFile string) error {
	signs := needs&Login != 0
	secret, secretFromFile := getenv("JWT_SECRET"), secretFile
	hs256 := secret != "" || secretFromFile != ""
	if !signs && getenv("JWT_PRIVATE_KEY_FILE") != "" {
		return fmt.Errorf("%w: JWT_PRIVATE_KEY_FILE is set, but this service only verifies tokens: give it the public keys only (JWT_PUBLIC_KEYS_FILE)", ErrInvalid)
	}
	switch {
	case hs256 && (privateFile != "" || publicFile != ""):
		return fmt.Errorf("%w: both an HS256 secret (JWT_SECRET or JWT_SECRET_FILE) and Ed25519 key files (JWT_PRIVATE_KEY_FILE, JWT_PUBLIC_KEYS_FILE) are set; set one kind", ErrInvalid)
	case hs256:
		b, err := readSecret(secret, secretFromFile)
		if err != nil {
			return err
		}
		k, err := token.HMACKey(b)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		c.HS256 = true
		c.Keys.Accept = []token.Key{k}
		if signs {
			c.Keys.Signing = &k
		}
		return nil
	case signs && privateFile == "" && !c.Dev:
		return fmt.Errorf("%w: JWT_PRIVATE_KEY_FILE is not set: name the Ed25519 private key (PKCS#8 PEM) tokens are signed with (go run ./cmd/keys gen makes one), or set JWT_SECRET_FILE for HS256", ErrInvalid)
	case !signs && publicFile == "":
		return fmt.Errorf("%w: JWT_PUBLIC_KEYS_FILE is not set: name the file of Ed25519 public keys (PEM or a JWK Set) whose tokens are accepted, or set JWT_SECRET_FILE for HS256", ErrInvalid)
	case signs && privateFile == "": // dev mode
		k, err := token.GenerateEd25519()
		if err != nil {
			return err
		}
		c.Keys = token.Keys{Signing: &k, Accept: []token.Key{k.Public()}}
		c.KeysGenerated = true
		if publicFile == "" {
			return nil
		}
		more, err := token.KeyFiles{Public: publicFile}.Load()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		c.Keys.Accept = append(c.Keys.Accept, more.Accept...)
		return nil
	}
	c.KeyFiles = token.KeyFiles{Private: privateFile, Public: publicFile}
	var err error
	if c.Keys, err = c.KeyFiles.Load(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// readSecret returns the HS256 key from JWT_SECRET or the file named by
// JWT_SECRET_FILE.
func readSecret(value, file string) (key []byte, err error) {
	switch {
	case value != "" && file != "":
		return nil, fmt.Errorf("%w: both JWT_SECRET and JWT_SECRET_FILE are set; set one", ErrInvalid)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: JWT_SECRET_FILE: %w", ErrInvalid, err)
		}
		// Editors and `echo` add a newline; Kubernetes Secrets made with
		// --from-literal do not. Either way the key is the line.
		key = []byte(strings.TrimRight(string(b), "\r\n"))
		if len(key) < token.MinKeySize {
			return nil, fmt.Errorf("%w: JWT_SECRET_FILE %s holds %d bytes, want at least %d (make one with: head -c 32 /dev/urandom | base64)", ErrInvalid, file, len(key), token.MinKeySize)
		}
		return key, nil
	default:
		if len(value) < token.MinKeySize {
			return nil, fmt.Errorf("%w: JWT_SECRET is %d bytes, want at least %d (make one with: head -c 32 /dev/urandom | base64)", ErrInvalid, len(value), token.MinKeySize)
		}
		return []byte(value), nil
	}
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}

func flagOrEnvSet(fs *flag.FlagSet, name string, getenv func(string) string, key string) bool {
	set := getenv(key) != ""
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// envReader reads environment defaults for flags, keeping the first error so
// that a malformed value is reported rather than silently replaced.
type envReader struct {
	getenv func(string) string
	err    error
}

func (e *envReader) str(key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func (e *envReader) duration(key string, def time.Duration) time.Duration {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.fail(fmt.Errorf("%w: %s=%q is not a duration such as 5s or 1m30s", ErrInvalid, key, v))
		return def
	}
	return d
}

func (e *envReader) integer(key string, def int) int {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(fmt.Errorf("%w: %s=%q is not a whole number", ErrInvalid, key, v))
		return def
	}
	return n
}

func (e *envReader) boolean(key string) bool {
	v := e.getenv(key)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(fmt.Errorf("%w: %s=%q is not true or false", ErrInvalid, key, v))
	}
	return b
}

func (e *envReader) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}
