package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/certs"
	"example.com/app/internal/edge/edgetest"
	"example.com/app/internal/testbin"
)

// TestRun starts the stack, uses it through nginx, stops it as Ctrl-C
// would, and checks that every port is free again.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stack: skipped with -short")
	}
	edgetest.Binary(t) // fail (or skip) here if there is no nginx
	tlsDir := filepath.Join(t.TempDir(), "tls")
	edgePort, httpPort := port(edgetest.FreeAddr(t)), port(edgetest.FreeAddr(t))
	var stdout, stderr testbin.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// NGINX_BIN: the nginx the tests run (CI runs them with two).
		done <- run(ctx, []string{"up", "-tls", tlsDir}, env(map[string]string{"EDGE_PORT": edgePort, "EDGE_HTTP_PORT": httpPort, "NGINX_BIN": os.Getenv("NGINX_BIN")}), &stdout, &stderr)
	}()
	deadline := time.After(2 * time.Minute) // building takes a while on a cold cache
	for !strings.Contains(stdout.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("run returned %v before the stack was up\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
		case <-deadline:
			t.Fatalf("the stack was not up after 2 minutes\nstdout:\n%s\nstderr:\n%s", &stdout, &stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	out := stdout.String()
	for _, want := range []string{"https://localhost:" + edgePort + " (nginx 1.", "https://localhost:" + edgePort + "/ui/", "curl --cacert " + tlsDir + "/ca.pem https://localhost:" + edgePort + "/login -u user:password"} {
		if !strings.Contains(out, want) {
			t.Errorf("run printed no %q:\n%s", want, out)
		}
	}
	if strings.Contains(stderr.String()+out, "PRIVATE KEY") {
		t.Error("run printed the private key")
	}
	if strings.Contains(stderr.String(), "HS256") {
		t.Errorf("a service warned about HS256, want Ed25519 key files:\n%s", &stderr)
	}

	ca, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	c := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       5 * time.Second,
	}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "https://localhost:"+edgePort+"/login", nil)
	req.SetBasicAuth("user", "password")
	var login struct{ Token string }
	if code := doJSON(t, c, req, &login); code != http.StatusOK || login.Token == "" {
		t.Fatalf("POST /login through the edge = %d, want 200 with a token", code)
	}
	req, _ = http.NewRequest("GET", "https://localhost:"+edgePort+"/secure", nil)
	req.Header.Set("Authorization", "Bearer "+login.Token)
	var secure struct{ User string }
	if code := doJSON(t, c, req, &secure); code != http.StatusOK || secure.User != "user" {
		t.Errorf("GET /secure with the token = %d %+v, want 200 for user", code, secure)
	}
	resp, err := c.Get("https://localhost:" + edgePort + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /ui/ = %d %q, want 200 with frontend/index.html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, err = c.Get("http://localhost:" + httpPort + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := "https://localhost:" + edgePort + "/version"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("GET /version over plain HTTP = %d to %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	c.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of cancel")
	}
	addrs := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindAllString(out, -1)
	addrs = append(addrs, "127.0.0.1:"+edgePort, "127.0.0.1:"+httpPort)
	if len(addrs) < 6 {
		t.Errorf("found addresses %q in the output, want the services' four and nginx's two", addrs)
	}
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("after run returned, %s is still taken: %v", addr, err)
			continue
		}
		l.Close()
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	}
}

func TestRunBadPort(t *testing.T) {
	for _, v := range []string{"http", "0", "70000"} {
		err := run(t.Context(), []string{"up"}, env(map[string]string{"EDGE_PORT": v}), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "EDGE_PORT") {
			t.Errorf("run with EDGE_PORT=%q error = %v, want one naming EDGE_PORT", v, err)
		}
	}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func doJSON(t *testing.T, c *http.Client, req *http.Request, v any) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Errorf("%s %s: decoding: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode
}

// TestEnsureCertsPartial checks that a tls/ holding only some of the files
// is left alone, with an error saying how to replace them.
func TestEnsureCertsPartial(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, certs.CAFile), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := ensureCerts(dir, io.Discard)
	if !errors.Is(err, certs.ErrExist) || !strings.Contains(err.Error(), "make certs FORCE=1") {
		t.Errorf("ensureCerts(%s) with only %s: error = %v, want ErrExist naming make certs FORCE=1", dir, certs.CAFile, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, certs.CAFile)); string(data) != "old" {
		t.Errorf("ensureCerts replaced %s", certs.CAFile)
	}
}
