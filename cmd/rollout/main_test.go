package main

import (
	"bytes"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const token = "header.payload.signature-not-to-be-printed"

// newTLSServer starts an HTTPS server with /login (user "user", password
// "s3cret-pass") and /secure (needs the token), and writes its certificate to
// a PEM file for -cacert.
func newTLSServer(t *testing.T) (srv *httptest.Server, caFile string) {
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
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// runRollout calls run with args after the program name, a short attack, and
// returns its error and output.
func runRollout(t *testing.T, args ...string) (err error, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"rollout", "-rate", "20", "-duration", "500ms", "-timeout", "1s"}, args...)
	err = run(t.Context(), args, &out, &errOut)
	t.Logf("rollout %q: error %v\nstdout:\n%s\nstderr:\n%s", args[1:], err, &out, &errOut)
	return err, out.String(), errOut.String()
}

func TestTLSWithCACert(t *testing.T) {
	t.Parallel()
	srv, ca := newTLSServer(t)
	err, stdout, _ := runRollout(t, "-url", srv.URL+"/version", "-cacert", ca)
	if err != nil {
		t.Errorf("run error = %v, want nil", err)
	}
	if !strings.Contains(stdout, "0 failed") || !strings.Contains(stdout, "versions: 1.0.0=") {
		t.Errorf("stdout does not say 0 failed and versions: 1.0.0=")
	}
}

func TestTLSUnknownCAFails(t *testing.T) {
	t.Parallel()
	srv, _ := newTLSServer(t)
	err, stdout, _ := runRollout(t, "-url", srv.URL+"/version") // system roots do not know the test CA
	if !errors.Is(err, errFailed) {
		t.Errorf("run error = %v, want errFailed", err)
	}
	if !strings.Contains(stdout, "failures: connect=1") { // 20/s for 0.5 s: 10 or 11 requests
		t.Errorf("stdout does not count the TLS failures as connect errors")
	}
}

func TestTLSInsecure(t *testing.T) {
	t.Parallel()
	srv, _ := newTLSServer(t)
	err, _, stderr := runRollout(t, "-url", srv.URL+"/version", "-insecure")
	if err != nil {
		t.Errorf("run error = %v, want nil", err)
	}
	if !strings.Contains(stderr, "not verified") {
		t.Errorf("stderr = %q, want a warning that the certificate is not verified", stderr)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	srv, ca := newTLSServer(t)
	err, stdout, stderr := runRollout(t, "-url", srv.URL+"/secure", "-cacert", ca, "-login", "user:s3cret-pass")
	if err != nil {
		t.Errorf("run error = %v, want nil (the token was not used?)", err)
	}
	if !strings.Contains(stdout, "0 failed") {
		t.Errorf("stdout does not say 0 failed")
	}
	for _, secret := range []string{token, "s3cret-pass"} {
		if strings.Contains(stdout+stderr, secret) {
			t.Errorf("output contains the secret %q", secret)
		}
	}
}

func TestLoginWrongPasswordIsFatal(t *testing.T) {
	t.Parallel()
	srv, ca := newTLSServer(t)
	err, stdout, _ := runRollout(t, "-url", srv.URL+"/secure", "-cacert", ca, "-login", "user:wrong-pass")
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
	srv, ca := newTLSServer(t)
	err, stdout, _ := runRollout(t, "-url", srv.URL+"/secure", "-cacert", ca) // no token: 401s
	if !errors.Is(err, errFailed) {
		t.Errorf("run error = %v, want errFailed (exit status 1)", err)
	}
	if !strings.Contains(stdout, "4xx=1") { // 10 or 11
		t.Errorf("stdout does not count the 401s as 4xx")
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{}, // no -url
		{"-url", "example.com/version"},
		{"-url", "http://localhost/", "-rate", "0"},
		{"-url", "http://localhost/", "-concurrency", "0"},
		{"-url", "http://localhost/", "-timeout", "0s"},
		{"-url", "http://localhost/", "-cacert", "ca.pem", "-insecure"},
		{"-url", "http://localhost/", "-login", "nopassword"},
		{"-url", "http://localhost/", "extra"},
		{"-url", "http://localhost/", "-no-such-flag"},
	}
	for _, args := range tests {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"rollout"}, args...), &stdout, &stderr)
		var usage usageError
		if !errors.As(err, &usage) {
			t.Errorf("run(%q) error = %v, want a usage error (exit status 2)", args, err)
		}
		if stdout.Len() > 0 {
			t.Errorf("run(%q) wrote %q to stdout, want nothing", args, &stdout)
		}
	}
}
