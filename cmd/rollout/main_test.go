package main

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const token = "header.payload.signature-not-to-be-printed"

// newTLSServer starts an HTTPS server with /login (user "user", password
// "s3cret-pass") and /secure (needs the token), and writes its certificate to
// a PEM file for -cacert. Like the nginx edge it offers HTTP/2; it counts the
// connections it accepts.
func newTLSServer(t *testing.T) (srv *httptest.Server, caFile string, accepted *atomic.Int64) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "s3cret-pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="app"`)
			http.Error(w, `{"error":"authorization failed"}`, http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"token":"` + token + `","expires_at":"2030-01-01T00:00:00Z"}`))
	})
	mux.HandleFunc("GET /secure", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Version", "1.0.0")
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"invalid token"}`, http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"message":"Hello","user":"user"}`))
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Version", "1.0.0")
		w.Write([]byte(`{"service":"hello","version":"1.0.0"}`))
	})
	accepted = new(atomic.Int64)
	srv = httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile, accepted
}

// runRollout calls run with args after the program name, a short attack, and
// the environment env, and returns its error and output.
func runRollout(t *testing.T, env map[string]string, args ...string) (err error, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"rollout", "-rate", "20", "-duration", "500ms", "-timeout", "1s"}, args...)
	err = run(t.Context(), args, func(k string) string { return env[k] }, &out, &errOut)
	t.Logf("rollout %q: error %v\nstdout:\n%s\nstderr:\n%s", args[1:], err, &out, &errOut)
	return err, out.String(), errOut.String()
}

func TestTLSWithCACert(t *testing.T) {
	t.Parallel()
	srv, ca, _ := newTLSServer(t)
	err, stdout, _ := runRollout(t, nil, "-url", srv.URL+"/version", "-cacert", ca)
	if err != nil {
		t.Errorf("run error = %v, want nil", err)
	}
	if !strings.Contains(stdout, "0 failed") || !strings.Contains(stdout, "versions: 1.0.0=") {
		t.Errorf("stdout does not say 0 failed and versions: 1.0.0=")
	}
}

func TestTLSUnknownCAFails(t *testing.T) {
	t.Parallel()
	srv, _, _ := newTLSServer(t)
	err, stdout, _ := runRollout(t, nil, "-url", srv.URL+"/version") // system roots do not know the test CA
	if !errors.Is(err, errFailed) {
		t.Errorf("run error = %v, want errFailed", err)
	}
	if !strings.Contains(stdout, "failures: connect=1") { // 20/s for 0.5 s: 10 or 11 requests
		t.Errorf("stdout does not count the TLS failures as connect errors")
	}
}

func TestTLSInsecure(t *testing.T) {
	t.Parallel()
	srv, _, _ := newTLSServer(t)
	err, _, stderr := runRollout(t, nil, "-url", srv.URL+"/version", "-insecure")
	if err != nil {
		t.Errorf("run error = %v, want nil", err)
	}
	if !strings.Contains(stderr, "not verified") {
		t.Errorf("stderr = %q, want a warning that the certificate is not verified", stderr)
	}
}

// writeFile writes content to a new file and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "login")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func noEnv(string) string { return "" }

func TestLoginSources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"-login", nil, []string{"-login", "user:s3cret-pass"}},
		{"-login-file", nil, []string{"-login-file", writeFile(t, "user:s3cret-pass\n")}},
		{"-login-file CRLF", nil, []string{"-login-file", writeFile(t, "user:s3cret-pass\r\n")}},
		{"-login-file no newline", nil, []string{"-login-file", writeFile(t, "user:s3cret-pass")}},
		{"env", map[string]string{"ROLLOUT_LOGIN": "user:s3cret-pass"}, nil},
		{"-login-file over env", map[string]string{"ROLLOUT_LOGIN": "user:wrong-pass"},
			[]string{"-login-file", writeFile(t, "user:s3cret-pass\n")}},
		{"-login over env", map[string]string{"ROLLOUT_LOGIN": "user:wrong-pass"}, []string{"-login", "user:s3cret-pass"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, ca, _ := newTLSServer(t)
			err, stdout, stderr := runRollout(t, tt.env, append([]string{"-url", srv.URL + "/secure", "-cacert", ca}, tt.args...)...)
			if err != nil {
				t.Errorf("run error = %v, want nil (the token was not used?)", err)
			}
			if !strings.Contains(stdout, "0 failed") || !strings.Contains(stdout, `as "user"`) {
				t.Errorf("stdout does not say logged in as \"user\" and 0 failed")
			}
			for _, secret := range []string{token, "s3cret-pass", "wrong-pass"} {
				if strings.Contains(stdout+stderr, secret) {
					t.Errorf("output contains the secret %q", secret)
				}
			}
		})
	}
}

func TestNoLoginWithoutEnv(t *testing.T) {
	t.Parallel()
	srv, ca, _ := newTLSServer(t)
	err, stdout, _ := runRollout(t, map[string]string{"ROLLOUT_LOGIN": ""}, "-url", srv.URL+"/version", "-cacert", ca)
	if err != nil {
		t.Errorf("run error = %v, want nil", err)
	}
	if strings.Contains(stdout, "logged in") {
		t.Errorf("stdout says logged in, want no login without -login, -login-file or ROLLOUT_LOGIN")
	}
}

// TestKeepAlive checks, against a server that offers HTTP/2 like the edge,
// that -keepalive=false opens a connection for the login and one for every
// request, and that the default reuses a few.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		mode string
	}{
		{"default", nil, "kept alive"},
		{"-keepalive=false", []string{"-keepalive=false"}, "new per request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, ca, accepted := newTLSServer(t)
			login := writeFile(t, "user:s3cret-pass\n")
			err, stdout, _ := runRollout(t, nil, append([]string{"-url", srv.URL + "/secure", "-cacert", ca, "-login-file", login}, tt.args...)...)
			if err != nil {
				t.Fatalf("run error = %v, want nil", err)
			}
			var requests, opened int64
			i := strings.Index(stdout, "summary:")
			if i < 0 {
				t.Fatalf("stdout has no summary")
			}
			summary, _, _ := strings.Cut(stdout[i:], "\n")
			_, after, _ := strings.Cut(summary, "; connections: ")
			mode, n, _ := strings.Cut(after, ", ")
			if _, err := fmt.Sscanf(summary, "summary: %d requests", &requests); err != nil {
				t.Fatalf("summary %q: %v", summary, err)
			}
			if _, err := fmt.Sscanf(n, "%d opened", &opened); err != nil || mode != tt.mode {
				t.Fatalf("summary %q: want \"; connections: %s, N opened\"", summary, tt.mode)
			}
			got := accepted.Load()
			if tt.mode == "new per request" && (got != requests+1 || opened != requests) { // +1: the login
				t.Errorf("%d requests and a login: server accepted %d connections, summary says %d; want %d and %d", requests, got, opened, requests+1, requests)
			}
			if tt.mode == "kept alive" && (got > requests/3 || opened > got) {
				t.Errorf("%d requests and a login: server accepted %d connections, summary says %d; want a few", requests, got, opened)
			}
		})
	}
}

// TestLoginEvery checks that -login-every logs in again as the load goes,
// that the requests after a login send its token, and that the summary
// counts the logins apart, with the version that answered them.
func TestLoginEvery(t *testing.T) {
	t.Parallel()
	var logins atomic.Int64
	var mu sync.Mutex
	used := map[string]int{} // tokens /secure was sent, and how often
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Version", "2.0.0")
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "s3cret-pass" {
			http.Error(w, `{"error":"authorization failed"}`, http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"token":"token-%d"}`, logins.Add(1))
	})
	mux.HandleFunc("GET /secure", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Version", "1.0.0")
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer token-")
		if n, err := strconv.Atoi(tok); !ok || err != nil || n < 1 || int64(n) > logins.Load() {
			http.Error(w, `{"error":"invalid token"}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		used[tok]++
		mu.Unlock()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	var out, errOut bytes.Buffer
	args := []string{"rollout", "-url", srv.URL + "/secure", "-rate", "50", "-duration", "1s", "-login-every", "5"}
	err := run(t.Context(), args, func(k string) string { return map[string]string{"ROLLOUT_LOGIN": "user:s3cret-pass"}[k] }, &out, &errOut)
	t.Logf("rollout %q: error %v\nstdout:\n%s\nstderr:\n%s", args[1:], err, &out, &errOut)
	if err != nil {
		t.Fatalf("run error = %v, want nil", err)
	}
	var requests, failed, opened, summaryLogins, loginsFailed int64
	summary := out.String()[strings.Index(out.String(), "summary:"):]
	if _, err := fmt.Sscanf(summary, "summary: %d requests in %s (%s achieved), %d failed; connections: kept alive, %d opened; logins: %d, %d failed",
		&requests, new(string), new(string), &failed, &opened, &summaryLogins, &loginsFailed); err != nil {
		t.Fatalf("summary %q: %v", summary, err)
	}
	if got := logins.Load(); got != summaryLogins+1 || summaryLogins != requests/5 || loginsFailed != 0 || failed != 0 { // +1: the first login
		t.Errorf("%d requests: server saw %d logins, summary %d logins (%d failed), %d failed; want %d logins and the first, none failed",
			requests, got, summaryLogins, loginsFailed, failed, requests/5)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(used) < int(summaryLogins) { // the first token, and most of the later ones
		t.Errorf("/secure was sent %d distinct tokens (%v) after %d logins, want the new ones", len(used), used, summaryLogins)
	}
	if !strings.Contains(summary, " login/2.0.0=") || !strings.Contains(summary, " 1.0.0=") {
		t.Errorf("summary %q: want the logins' version as login/2.0.0 and /secure's as 1.0.0", summary)
	}
}

func TestLoginWrongPasswordIsFatal(t *testing.T) {
	t.Parallel()
	srv, ca, _ := newTLSServer(t)
	err, stdout, _ := runRollout(t, nil, "-url", srv.URL+"/secure", "-cacert", ca, "-login", "user:wrong-pass")
	if err == nil || errors.Is(err, errFailed) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("run error = %v, want a login error with 401", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("run error = %v: contains the password", err)
	}
	if strings.Contains(stdout, "attacking") {
		t.Errorf("stdout = %q, want no attack after a failed login", stdout)
	}
}

func TestFailedRequestsAreAnError(t *testing.T) {
	t.Parallel()
	srv, ca, _ := newTLSServer(t)
	err, stdout, _ := runRollout(t, nil, "-url", srv.URL+"/secure", "-cacert", ca) // no token: 401s
	if !errors.Is(err, errFailed) {
		t.Errorf("run error = %v, want errFailed (exit status 1)", err)
	}
	if !strings.Contains(stdout, "4xx=1") { // 10 or 11
		t.Errorf("stdout does not count the 401s as 4xx")
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "user:s3cret-pass\n")
	tests := [][]string{
		{}, // no -url
		{"-url", "example.com/version"},
		{"-url", "http://localhost/", "-rate", "0"},
		{"-url", "http://localhost/", "-concurrency", "0"},
		{"-url", "http://localhost/", "-ramp-to", "-1"},
		{"-url", "http://localhost/", "-ramp-to", "100", "-ramp-for", "0s"},
		{"-url", "http://localhost/", "-timeout", "0s"},
		{"-url", "http://localhost/", "-cacert", "ca.pem", "-insecure"},
		{"-url", "http://localhost/", "-login", "nopassword"},
		{"-url", "http://localhost/", "-login", ""},
		{"-url", "http://localhost/", "-login", "user:s3cret-pass", "-login-file", good},
		{"-url", "http://localhost/", "-login-file", writeFile(t, "s3cret-pass\n")},
		{"-url", "http://localhost/", "-login-file", writeFile(t, "user:s3cret-pass\n\n")},
		{"-url", "http://localhost/", "-login-file", writeFile(t, "")},
		{"-url", "http://localhost/", "-keepalive=maybe"},
		{"-url", "http://localhost/", "-login-every", "-1", "-login-file", good},
		{"-url", "http://localhost/", "-login-every", "5"}, // no login to repeat
		{"-url", "http://localhost/", "extra"},
		{"-url", "http://localhost/", "-no-such-flag"},
	}
	for _, args := range tests {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"rollout"}, args...), noEnv, &stdout, &stderr)
		var usage usageError
		if !errors.As(err, &usage) {
			t.Errorf("run(%q) error = %v, want a usage error (exit status 2)", args, err)
		}
		if stdout.Len() > 0 {
			t.Errorf("run(%q) wrote %q to stdout, want nothing", args, &stdout)
		}
		if err != nil && strings.Contains(err.Error()+stderr.String(), "s3cret-pass") {
			t.Errorf("run(%q) error = %v, stderr %q: contains the password", args, err, &stderr)
		}
	}
}

func TestLoginFileMissing(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "login")
	err := run(t.Context(), []string{"rollout", "-url", "http://localhost/", "-login-file", missing}, noEnv, &bytes.Buffer{}, &bytes.Buffer{})
	var usage usageError
	if err == nil || errors.As(err, &usage) || !strings.Contains(err.Error(), missing) {
		t.Errorf("run error = %v, want an error naming %s (exit status 1)", err, missing)
	}
}
