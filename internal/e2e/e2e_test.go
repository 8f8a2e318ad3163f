// Package e2e runs the real auth, hello and monolith binaries as processes
// and talks to them over real sockets.
package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"example.com/app/internal/testbin"
	"example.com/app/internal/token"
)

const secret = "e2e-secret-0123456789abcdef0123456789" // 37 bytes, for HS256

var bins map[string]string

// The Ed25519 key pair the services share: auth and the monolith sign with
// privateKey, everyone accepts publicKeys. privatePEM must never be logged.
var privateKey, publicKeys string
var privatePEM []byte

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped with -short")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err = testbin.Build(dir, "-X main.version=1.0.0 -X main.commit=e2etest", "auth", "hello", "monolith")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	if err := writeKeys(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeKeys(dir string) error {
	k, err := token.GenerateEd25519()
	if err != nil {
		return err
	}
	if privatePEM, err = token.MarshalPrivateKey(k); err != nil {
		return err
	}
	pub, err := token.MarshalPublicKeys([]token.Key{k})
	if err != nil {
		return err
	}
	privateKey, publicKeys = filepath.Join(dir, "jwt-private.pem"), filepath.Join(dir, "jwt-public.pem")
	if err := os.WriteFile(privateKey, privatePEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(publicKeys, pub, 0o600)
}

// env returns a verifier's process environment: the shared public keys,
// quick shutdowns, and extra.
func env(extra ...string) []string {
	return append([]string{"JWT_PUBLIC_KEYS_FILE=" + publicKeys, "SHUTDOWN_DRAIN=0s", "SHUTDOWN_TIMEOUT=5s"}, extra...)
}

// envFor returns name's process environment: env's, and for the services
// that log users in the private key and the demo user.
func envFor(name string, extra ...string) []string {
	if name == "hello" {
		return env(extra...)
	}
	return env(append([]string{"JWT_PRIVATE_KEY_FILE=" + privateKey, "DEMO_USER=true"}, extra...)...)
}

func start(t *testing.T, name string, environ []string, args ...string) *testbin.Process {
	t.Helper()
	p := testbin.Start(t, bins[name], environ, args...)
	p.WaitReady(t)
	return p
}

type answer struct {
	code   int
	header http.Header
	body   map[string]any
}

func call(t testing.TB, method, url string, set func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, url, b, err)
		}
	} else {
		a.body = map[string]any{"text": string(b)}
	}
	return a
}

func basic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func login(t testing.TB, addr string) string {
	t.Helper()
	a := call(t, http.MethodPost, "http://"+addr+"/login", basic("user", "password"))
	tok, _ := a.body["token"].(string)
	if a.code != http.StatusOK || tok == "" {
		t.Fatalf("POST /login as user/password = %d %v, want 200 with a token", a.code, a.body)
	}
	return tok
}

// TestSplitServices: log in at auth, call hello's /secure with the token.
func TestSplitServices(t *testing.T) {
	auth := start(t, "auth", envFor("auth"))
	hello := start(t, "hello", env())

	tok := login(t, auth.HTTP)
	a := call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tok))
	if a.code != http.StatusOK || a.body["message"] != "Hello" || a.body["user"] != "user" {
		t.Errorf("hello GET /secure with auth's token = %d %v, want 200 Hello user", a.code, a.body)
	}
	if a := call(t, http.MethodPost, "http://"+auth.HTTP+"/login", basic("user", "wrong-guess-x1")); a.code != http.StatusUnauthorized {
		t.Errorf("auth POST /login with a wrong password = %d, want 401", a.code)
	}
	if a := call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tok[:len(tok)-3]+"abc")); a.code != http.StatusUnauthorized || a.body["error"] == nil {
		t.Errorf("hello GET /secure with a forged signature = %d %v, want 401 JSON", a.code, a.body)
	}
	// auth serves no greeting, hello no login: the split is real.
	if a := call(t, http.MethodGet, "http://"+auth.HTTP+"/secure", bearer(tok)); a.code != http.StatusNotFound {
		t.Errorf("auth GET /secure = %d, want 404", a.code)
	}
	if a := call(t, http.MethodGet, "http://"+hello.HTTP+"/login", basic("user", "password")); a.code != http.StatusNotFound {
		t.Errorf("hello GET /login = %d, want 404", a.code)
	}

	for name, p := range map[string]*testbin.Process{"auth": auth, "hello": hello} {
		a := call(t, http.MethodGet, "http://"+p.HTTP+"/version", func(r *http.Request) { r.Header.Set("X-Request-ID", "e2e-"+name) })
		if a.code != http.StatusOK || a.body["service"] != name || a.body["version"] != "1.0.0" || a.body["commit"] != "e2etest" {
			t.Errorf("%s GET /version = %d %v, want the build set by -ldflags", name, a.code, a.body)
		}
		host, _ := os.Hostname()
		if a.header.Get("X-App-Version") != "1.0.0" || a.header.Get("X-Pod-Name") != host || a.header.Get("X-Request-ID") != "e2e-"+name {
			t.Errorf("%s answer headers = %v, want X-App-Version, X-Pod-Name and the X-Request-ID sent", name, a.header)
		}
	}

	// Nothing secret reaches the logs.
	time.Sleep(1100 * time.Millisecond) // the access log is flushed every second
	for name, p := range map[string]*testbin.Process{"auth": auth, "hello": hello} {
		logs := p.Logs()
		if !strings.Contains(logs, `"route":"/version"`) || !strings.Contains(logs, `"request_id":"e2e-`+name+`"`) {
			t.Errorf("%s logs lack the /version request line with its request ID:\n%s", name, logs)
		}
		// (The demo user's public password is in a warning, so a wrong one is looked for.)
		pemBody := strings.Split(string(privatePEM), "\n")[1]
		for _, s := range []string{pemBody, tok, "wrong-guess-x1", "Basic "} {
			if strings.Contains(logs, s) {
				t.Errorf("%s logs contain %.12q…, a secret", name, s)
			}
		}
	}
}

func TestMonolith(t *testing.T) {
	m := start(t, "monolith", []string{"SHUTDOWN_TIMEOUT=5s"}, "-dev")
	tok := login(t, m.HTTP)
	if a := call(t, http.MethodGet, "http://"+m.HTTP+"/secure", bearer(tok)); a.code != http.StatusOK || a.body["user"] != "user" {
		t.Errorf("monolith GET /secure = %d %v, want 200 for user", a.code, a.body)
	}
	if a := call(t, http.MethodGet, "http://"+m.HTTP+"/", nil); a.code != http.StatusOK || a.body["message"] != "Hello" {
		t.Errorf("monolith GET / = %d %v, want 200 Hello", a.code, a.body)
	}
	if len(m.LogEntries("dev mode: no signing key is set, so an Ed25519 key pair was generated; tokens will not survive a restart")) != 1 {
		t.Errorf("monolith -dev did not log that it generated a key:\n%s", m.Logs())
	}
	if len(m.LogEntries(`DEMO_USER: the demo user "user" with password "password" can log in; set USERS_FILE instead anywhere but the course`)) != 1 {
		t.Errorf("monolith without USERS_FILE did not warn about the demo user:\n%s", m.Logs())
	}
	m.Signal(t, syscall.SIGINT)
	if code := m.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("monolith after SIGINT exited %d, want 0", code)
	}
}

func TestUsersFile(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(file, []byte("# the team\nalice:"+string(hash)+":alice@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := start(t, "auth", env("JWT_PRIVATE_KEY_FILE="+privateKey, "USERS_FILE="+file))
	if a := call(t, http.MethodGet, "http://"+auth.HTTP+"/login", basic("alice", "s3cret")); a.code != http.StatusOK {
		t.Errorf("login as alice from USERS_FILE = %d %v, want 200", a.code, a.body)
	}
	if a := call(t, http.MethodGet, "http://"+auth.HTTP+"/login", basic("user", "password")); a.code != http.StatusUnauthorized {
		t.Errorf("login as the demo user with USERS_FILE set = %d, want 401: the demo user is only the default", a.code)
	}
}

func TestProbeToggles(t *testing.T) {
	hello := start(t, "hello", env())
	ops := "http://" + hello.Health
	steps := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/readiness", 200},
		{http.MethodPost, "/readiness/status", 503},
		{http.MethodGet, "/readiness", 503},
		{http.MethodGet, "/healthz", 200},
		{http.MethodGet, "/readiness/status", 200},
		{http.MethodGet, "/readiness", 200},
		{http.MethodPost, "/healthz/status", 503},
		{http.MethodGet, "/healthz", 503},
		{http.MethodGet, "/healthz/status", 200},
		{http.MethodGet, "/healthz", 200},
	}
	for _, s := range steps {
		if a := call(t, s.method, ops+s.path, nil); a.code != s.want {
			t.Errorf("%s %s = %d, want %d", s.method, s.path, a.code, s.want)
		}
	}
	// The app port keeps serving while unready: readiness only steers traffic.
	call(t, http.MethodPost, ops+"/readiness/status", nil)
	if a := call(t, http.MethodGet, "http://"+hello.HTTP+"/", nil); a.code != http.StatusOK {
		t.Errorf("GET / while readiness is toggled off = %d, want 200", a.code)
	}
	// The ops port is not the app port, and vice versa.
	if a := call(t, http.MethodGet, "http://"+hello.HTTP+"/healthz", nil); a.code != http.StatusNotFound {
		t.Errorf("app port GET /healthz = %d, want 404", a.code)
	}
	if a := call(t, http.MethodGet, ops+"/secure", nil); a.code != http.StatusNotFound {
		t.Errorf("ops port GET /secure = %d, want 404", a.code)
	}
}

func TestMetrics(t *testing.T) {
	auth := start(t, "auth", envFor("auth"))
	hello := start(t, "hello", env())
	tok := login(t, auth.HTTP)
	call(t, http.MethodGet, "http://"+auth.HTTP+"/login", basic("user", "nope"))
	call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tok))
	call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer("garbage"))
	call(t, http.MethodGet, "http://"+hello.HTTP+"/no/such/page/123", nil)

	for _, tt := range []struct {
		p    *testbin.Process
		want []string
	}{
		{auth, []string{
			`app_build_info{commit="e2etest",service="auth",version="1.0.0"} 1`,
			`login_attempts_total{outcome="success",service="auth"} 1`,
			`login_attempts_total{outcome="bad_credentials",service="auth"} 1`,
			`http_requests_total{code="401",method="GET",route="/login",service="auth"} 1`,
		}},
		{hello, []string{
			`http_requests_total{code="200",method="GET",route="/secure",service="hello"} 1`,
			`http_requests_total{code="401",method="GET",route="/secure",service="hello"} 1`,
			`http_requests_total{code="404",method="GET",route="unmatched",service="hello"} 1`,
			`token_rejections_total{reason="malformed",service="hello"} 1`,
			`http_request_duration_seconds_bucket{method="GET",route="/secure",service="hello",le="+Inf"} 2`,
			`http_requests_in_flight{service="hello"}`,
			"process_resident_memory_bytes ",
			"go_goroutines ",
		}},
	} {
		a := call(t, http.MethodGet, "http://"+tt.p.Health+"/metrics", nil)
		text := a.body["text"].(string)
		for _, w := range tt.want {
			if !strings.Contains(text, w) {
				t.Errorf("/metrics lacks %s", w)
			}
		}
		if strings.Contains(text, "/no/such/page") {
			t.Error("/metrics has a raw path as a label")
		}
	}
}

// TestGracefulShutdown: SIGTERM while a slow request is in flight. Readiness
// turns 503 at once, requests are served through the drain, the slow one
// completes, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	hello := start(t, "hello", []string{"JWT_PUBLIC_KEYS_FILE=" + publicKeys, "SHUTDOWN_DRAIN=1s", "SHUTDOWN_TIMEOUT=10s", "FAULT=latency=1500ms"})
	type result struct {
		code int
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + hello.HTTP + "/")
		if err != nil {
			slow <- result{err: err}
			return
		}
		resp.Body.Close()
		slow <- result{code: resp.StatusCode}
	}()
	time.Sleep(200 * time.Millisecond) // the request is in flight
	hello.Signal(t, syscall.SIGTERM)

	var readiness []int
	var wg sync.WaitGroup
	var duringDrain result
	wg.Go(func() { // a new request during the drain is still served
		time.Sleep(300 * time.Millisecond)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + hello.HTTP + "/version")
		if err == nil {
			resp.Body.Close()
			duringDrain.code = resp.StatusCode
		}
		duringDrain.err = err
	})
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		resp, err := http.Get("http://" + hello.Health + "/readiness")
		if err != nil {
			t.Fatalf("GET /readiness during the drain: %v", err)
		}
		resp.Body.Close()
		readiness = append(readiness, resp.StatusCode)
	}
	for _, c := range readiness {
		if c != http.StatusServiceUnavailable {
			t.Errorf("readiness during the drain = %v, want 503 throughout", readiness)
			break
		}
	}
	if r := <-slow; r.err != nil || r.code != http.StatusOK {
		t.Errorf("request in flight at SIGTERM = %d, %v; want 200", r.code, r.err)
	}
	wg.Wait()
	if duringDrain.err != nil || duringDrain.code != http.StatusOK {
		t.Errorf("new request during the drain = %d, %v; want 200", duringDrain.code, duringDrain.err)
	}
	if code := hello.Wait(t, 15*time.Second); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	for _, msg := range []string{"draining: readiness fails, requests are still served", "shutting down: waiting for in-flight requests", "stopped"} {
		if len(hello.LogEntries(msg)) != 1 {
			t.Errorf("no %q log line:\n%s", msg, hello.Logs())
		}
	}
}

func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	badUsers := filepath.Join(dir, "users")
	if err := os.WriteFile(badUsers, []byte("# ok\nalice:$2a$10$abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, bin string
		env       []string
		args      []string
		code      int
		want      string
	}{
		{"auth without keys", "auth", []string{"DEMO_USER=true"}, nil, 2, "JWT_PRIVATE_KEY_FILE is not set"},
		{"hello without keys", "hello", nil, nil, 2, "JWT_PUBLIC_KEYS_FILE is not set"},
		{"monolith without keys or -dev", "monolith", []string{"DEMO_USER=true"}, nil, 2, "JWT_PRIVATE_KEY_FILE is not set"},
		{"hello given a private key", "hello", env("JWT_PRIVATE_KEY_FILE=" + privateKey), nil, 2, "JWT_PRIVATE_KEY_FILE is set, but this service only verifies tokens"},
		{"auth without users", "auth", env("JWT_PRIVATE_KEY_FILE=" + privateKey), nil, 2, "USERS_FILE is not set"},
		{"monolith without users", "monolith", env("JWT_PRIVATE_KEY_FILE=" + privateKey), nil, 2, "DEMO_USER=true"},
		{"short JWT_SECRET", "hello", []string{"JWT_SECRET=short"}, nil, 2, "JWT_SECRET is 5 bytes, want at least 32"},
		{"bad users file", "auth", env("JWT_PRIVATE_KEY_FILE="+privateKey, "USERS_FILE="+badUsers), nil, 2, badUsers + ": line 2"},
		{"bad flag", "hello", env(), []string{"-bogus"}, 2, "flag provided but not defined: -bogus"},
		{"bad duration", "hello", env("SHUTDOWN_TIMEOUT=soon"), nil, 2, `SHUTDOWN_TIMEOUT="soon" is not a duration`},
		{"crash on start", "hello", env("FAULT=crash-on-start"), nil, 1, "crashing on start, as FAULT=crash-on-start asks"},
		{"-h", "auth", nil, []string{"-h"}, 0, "JWT_SECRET_FILE"},
	}
	for _, tt := range tests {
		code, stderr := testbin.Run(t, bins[tt.bin], tt.env, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant exit %d and %q", tt.name, code, stderr, tt.code, tt.want)
		}
	}
}

func TestPortInUse(t *testing.T) {
	first := start(t, "hello", env())
	code, stderr := testbin.Run(t, bins["hello"], env(), "-http="+first.HTTP, "-health=127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, first.HTTP) || !strings.Contains(stderr, "address already in use") {
		t.Errorf("hello on a port in use: exit %d, stderr:\n%s\nwant exit 1 naming %s", code, stderr, first.HTTP)
	}
}

func TestNeverReady(t *testing.T) {
	hello := testbin.Start(t, bins["hello"], env("FAULT=never-ready"))
	if a := call(t, http.MethodGet, "http://"+hello.HTTP+"/", nil); a.code != http.StatusOK {
		t.Errorf("never-ready release GET / = %d, want 200: it serves, it is just never ready", a.code)
	}
	time.Sleep(300 * time.Millisecond)
	if a := call(t, http.MethodGet, "http://"+hello.Health+"/readiness", nil); a.code != http.StatusServiceUnavailable {
		t.Errorf("never-ready release /readiness = %d, want 503", a.code)
	}
	if len(hello.LogEntries("FAULT is set: this is a deliberately bad release")) != 1 {
		t.Errorf("FAULT not logged loudly:\n%s", hello.Logs())
	}
}

func TestSlowStartAndErrorRate(t *testing.T) {
	slow := testbin.Start(t, bins["hello"], env("FAULT=slow-start=700ms"))
	if a := call(t, http.MethodGet, "http://"+slow.Health+"/readiness", nil); a.code != http.StatusServiceUnavailable {
		t.Errorf("slow-start release /readiness at once = %d, want 503", a.code)
	}
	if took := slow.WaitReady(t); took < 700*time.Millisecond {
		t.Errorf("slow-start=700ms release ready after %v, want at least 700ms", took)
	}

	flaky := start(t, "hello", env("FAULT=error-rate=1"))
	if a := call(t, http.MethodGet, "http://"+flaky.HTTP+"/", nil); a.code != http.StatusInternalServerError {
		t.Errorf("error-rate=1 release GET / = %d, want 500", a.code)
	}
}
