// Package edgetest runs nginx with the config templates in nginx/ for
// tests, on loopback ports with fresh certificates.
//
// Tests that need nginx fail without it, saying how to install it; a
// developer may skip them with SKIP_E2E=1, which CI ignores. NGINX_BIN=/path
// chooses the nginx binary (see edge.Find); CI runs the tests with Debian's
// and with a current one.
package edgetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/certs"
	"example.com/app/internal/edge"
	"example.com/app/internal/testbin"
)

// Binary returns the path of nginx. If there is none, the test fails with
// how to install it, unless SKIP_E2E=1 outside CI, which skips it.
func Binary(t testing.TB) string {
	t.Helper()
	if os.Getenv("SKIP_E2E") == "1" {
		if !InCI() {
			t.Skip("SKIP_E2E=1: skipping a test that runs nginx")
		}
		t.Log("SKIP_E2E=1 is ignored in CI (CI is set)")
	}
	path, err := edge.Find(os.Getenv)
	if err != nil {
		t.Fatalf("%v; set SKIP_E2E=1 to skip these tests", err)
	}
	return path
}

// InCI reports whether the CI environment variable says this is CI.
func InCI() bool {
	ci := os.Getenv("CI")
	return ci != "" && ci != "false" && ci != "0"
}

// ReadConfig returns a file from the module's nginx/ directory, such as
// "frontend.conf.template".
func ReadConfig(t testing.TB, name string) string {
	t.Helper()
	dir, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "nginx", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// UIDir returns the module's frontend/, the UI the frontend template serves
// at /ui/ (edge.Params.UIDir).
func UIDir(t testing.TB) string {
	t.Helper()
	dir, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "frontend")
}

// WriteCerts writes a fresh CA and a certificate for localhost into dir, as
// certgen does (ca.pem, cert.pem, key.pem), and returns the CA.
func WriteCerts(t testing.TB, dir string) *x509.CertPool {
	t.Helper()
	b, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteDir(dir, false); err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(b.CA)
	return ca
}

// Edge is a running nginx.
type Edge struct {
	URL     string         // https://localhost:port, the TLS listener
	HTTPURL string         // http://localhost:port, the redirect listener, if any
	Addr    string         // host:port of the TLS listener
	CAFile  string         // the CA certificate that signed nginx's
	CA      *x509.CertPool // the same, parsed
	Client  *http.Client   // trusts CA, speaks HTTP/2, does not follow redirects
	Version edge.Version   // nginx's
	// DrainFile is EDGE_DRAIN_FILE (the frontend's): create it and
	// /healthz answers 503.
	DrainFile string

	accessLog, errorLog *testbin.SyncBuffer
}

// Start renders tmpl, a template from nginx/ (see ReadConfig), with p and
// with free loopback listeners, fresh certificates and the http2 form of
// the nginx that runs it, which p need not set, nor the drain file (a
// fresh path, Edge.DrainFile, unless p names one); checks it with nginx -t
// (no warning allowed); and runs nginx until the test ends. p names the
// upstream servers and, for the frontend, the UI's directory.
func Start(t testing.TB, tmpl string, p edge.Params) *Edge {
	t.Helper()
	bin := Binary(t)
	version, err := edge.NginxVersion(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(t.TempDir(), "tls")
	ca := WriteCerts(t, tlsDir)
	redirect := slices.Contains(edge.EnvReferences(tmpl), edge.VarHTTPListen)
	if p.DrainFile == "" && slices.Contains(edge.EnvReferences(tmpl), edge.VarDrainFile) {
		p.DrainFile = filepath.Join(t.TempDir(), "draining")
	}

	// A free port may be taken between choosing and binding it: try again.
	for attempt := 1; ; attempt++ {
		e := &Edge{CAFile: filepath.Join(tlsDir, certs.CAFile), CA: ca, Version: version, DrainFile: p.DrainFile, accessLog: &testbin.SyncBuffer{}, errorLog: &testbin.SyncBuffer{}}
		p.HTTPSListen, p.TLSDir, p.HTTP2 = FreeAddr(t), tlsDir, edge.HTTP2For(version)
		e.Addr = p.HTTPSListen
		e.URL = "https://localhost:" + port(p.HTTPSListen)
		ready := []string{p.HTTPSListen}
		if redirect {
			p.HTTPListen = FreeAddr(t)
			e.HTTPURL = "http://localhost:" + port(p.HTTPListen)
			ready = append(ready, p.HTTPListen)
		}
		conf, err := p.Render(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		n := &edge.Nginx{Binary: bin, Dir: t.TempDir(), Site: conf, Stdout: e.accessLog, Stderr: e.errorLog}
		if _, err := n.Test(t.Context()); err != nil {
			t.Fatalf("nginx %s: %v", version, err)
		}
		proc, err := n.Start(t.Context(), ready...)
		if err != nil {
			if attempt < 3 && strings.Contains(err.Error(), "in use") {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := proc.Stop(10 * time.Second); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				t.Logf("nginx %s error log:\n%s", version, e.errorLog)
			}
		})
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: ca},
			ForceAttemptHTTP2: true,
		}
		t.Cleanup(tr.CloseIdleConnections)
		e.Client = &http.Client{
			Transport:     tr,
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		return e
	}
}

// LogEntry is one line of the access log, decoded.
type LogEntry map[string]any

// String returns the entry's field as a string, "" if missing.
func (e LogEntry) String(field string) string {
	switch v := e[field].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// AccessLog returns the access log's entries so far. Each must be JSON.
func (e *Edge) AccessLog(t testing.TB) []LogEntry {
	t.Helper()
	var entries []LogEntry
	for line := range strings.Lines(e.accessLog.String()) {
		var entry LogEntry
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("access log line %q is not JSON: %v", line, err)
		}
		entries = append(entries, entry)
	}
	return entries
}

// WaitLog returns the access log entry with request_id id, waiting up to
// 5 s for nginx to write it (it does after answering).
func (e *Edge) WaitLog(t testing.TB, id string) LogEntry {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		for _, entry := range e.AccessLog(t) {
			if entry.String("request_id") == id {
				return entry
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log entry with request_id %q; log:\n%s", id, e.accessLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ErrorLog returns nginx's error log so far.
func (e *Edge) ErrorLog() string { return e.errorLog.String() }

// FreeAddr returns a loopback address whose port is free at the moment: for
// nginx, or for an upstream that is down.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // only choosing a number
	return l.Addr().String()
}

// port returns the port of a host:port made by FreeAddr.
func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
