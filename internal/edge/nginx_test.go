package edge_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"example.com/app/internal/edge"
	"example.com/app/internal/edge/edgetest"
)

// These tests run Debian's nginx with the configs in nginx/ in front of
// stand-ins for the services (backend below). The end-to-end tests with the
// real services are in internal/edge/e2e.

// securityHeaders must be on every answer from the TLS listener.
var securityHeaders = map[string]string{
	"Strict-Transport-Security": "max-age=63072000",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"Referrer-Policy":           "no-referrer",
	"Content-Security-Policy":   "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestConfigsPassNginxT checks both templates with nginx -t, rendered
// with the http2 form for this nginx's version (no warning allowed), and
// that the other form fails here: the choice matters.
func TestConfigsPassNginxT(t *testing.T) {
	bin := edgetest.Binary(t)
	version, err := edge.NginxVersion(t.Context(), bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s is nginx %s", bin, version)
	tls := t.TempDir()
	edgetest.WriteCerts(t, tls)
	p := edge.Params{
		HTTPSListen: "127.0.0.1:1", HTTPListen: "127.0.0.1:2", TLSDir: tls, UIDir: edgetest.UIDir(t), DrainFile: "/tmp/draining",
		Auth: []string{"127.0.0.1:3"}, Hello: []string{"127.0.0.1:4", "127.0.0.1:5"}, Monolith: []string{"127.0.0.1:6"},
	}
	for _, name := range []string{"frontend.conf.template", "proxy.conf.template"} {
		for _, form := range []edge.HTTP2{edge.HTTP2Parameter, edge.HTTP2Directive} {
			p.HTTP2 = form
			site, err := p.Render(readConfig(t, name))
			if err != nil {
				t.Fatal(err)
			}
			n := &edge.Nginx{Binary: bin, Dir: t.TempDir(), Site: site}
			out, err := n.Test(t.Context())
			switch want := edge.HTTP2For(version); {
			case form == want && err != nil:
				t.Errorf("nginx %s -t with %s, EDGE_HTTP2=%q: %v", version, name, form, err)
			case form == want:
				t.Logf("nginx %s -t with %s, EDGE_HTTP2=%q:\n%s", version, name, form, out)
			case err == nil:
				t.Errorf("nginx %s -t with %s, EDGE_HTTP2=%q: no error or warning, want one (this nginx wants %q)", version, name, form, want)
			}
		}
	}
}

// TestFrontend checks the split services' edge: routes, headers, TLS,
// request IDs and the redirect.
func TestFrontend(t *testing.T) {
	auth, hello := startBackend(t, "auth"), startBackend(t, "hello")
	e := startFrontend(t, auth.addr(), hello.addr())

	t.Run("routes", func(t *testing.T) {
		tests := []struct {
			method, path string
			user         string // Basic credentials user:password, if any
			wantStatus   int
			wantPod      string // X-Pod-Name: which service answered
		}{
			{"GET", "/", "", 200, "hello"},
			{"GET", "/version", "", 200, "hello"},
			{"POST", "/login", "user:password", 200, "auth"},
			{"GET", "/login", "user:wrong", 401, "auth"},
			{"GET", "/login/x", "", 404, "hello"},
			{"GET", "/secure", "", 401, "hello"},
			{"GET", "/nope", "", 404, "hello"},
			// The ops port is never proxied: these reach hello's app port.
			{"GET", "/healthz/status", "", 404, "hello"},
			{"POST", "/readiness/status", "", 404, "hello"},
			{"GET", "/metrics", "", 404, "hello"},
		}
		for _, tt := range tests {
			req, _ := http.NewRequest(tt.method, e.URL+tt.path, nil)
			if u, p, ok := strings.Cut(tt.user, ":"); ok {
				req.SetBasicAuth(u, p)
			}
			resp, body := do(t, e.Client, req)
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("X-Pod-Name") != tt.wantPod {
				t.Errorf("%s %s: status %d from %q, want %d from %q; body %s",
					tt.method, tt.path, resp.StatusCode, resp.Header.Get("X-Pod-Name"), tt.wantStatus, tt.wantPod, body)
			}
			if resp.Header.Get("X-App-Version") != "1.0.0" {
				t.Errorf("%s %s: X-App-Version = %q, want the service's 1.0.0", tt.method, tt.path, resp.Header.Get("X-App-Version"))
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("%s %s: protocol %s, want HTTP/2", tt.method, tt.path, resp.Proto)
			}
			if got := resp.Header.Get("Server"); got != "nginx" {
				t.Errorf("%s %s: Server = %q, want nginx without a version", tt.method, tt.path, got)
			}
		}
	})

	t.Run("healthz", func(t *testing.T) {
		before := hello.requests.Load() + auth.requests.Load()
		resp, body := get(t, e.Client, e.URL+"/healthz")
		if resp.StatusCode != 200 || body != "ok\n" {
			t.Errorf("GET /healthz: %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
		}
		if after := hello.requests.Load() + auth.requests.Load(); after != before {
			t.Errorf("GET /healthz reached a service, want nginx to answer it")
		}
		resp, body = get(t, e.Client, e.HTTPURL+"/healthz")
		if resp.StatusCode != 200 || body != "ok\n" {
			t.Errorf("GET /healthz over plain HTTP: %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
		}
	})

	// The preStop's drain file: /healthz fails (the readiness probe takes
	// the pod out of the endpoints), everything else is served as before;
	// and /healthz recovers when the file goes.
	t.Run("draining", func(t *testing.T) {
		if err := os.WriteFile(e.DrainFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		resp, body := get(t, e.Client, e.URL+"/healthz")
		if resp.StatusCode != 503 || body != `{"error":"service unavailable"}`+"\n" {
			t.Errorf("GET /healthz with %s present: %d %q, want 503 and a JSON error", e.DrainFile, resp.StatusCode, body)
		}
		if resp, body := get(t, e.Client, e.URL+"/"); resp.StatusCode != 200 || resp.Header.Get("X-Pod-Name") != "hello" {
			t.Errorf("GET / while draining: %d from %q (%s), want hello's 200", resp.StatusCode, resp.Header.Get("X-Pod-Name"), body)
		}
		if resp, _ := get(t, e.Client, e.HTTPURL+"/healthz"); resp.StatusCode != 200 {
			t.Errorf("GET /healthz over plain HTTP (liveness' listener) while draining: %d, want 200", resp.StatusCode)
		}
		if err := os.Remove(e.DrainFile); err != nil {
			t.Fatal(err)
		}
		if resp, body := get(t, e.Client, e.URL+"/healthz"); resp.StatusCode != 200 {
			t.Errorf("GET /healthz after the drain file went: %d %q, want 200", resp.StatusCode, body)
		}
	})

	t.Run("redirect", func(t *testing.T) {
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, e.HTTPURL+"/secure?a=1&b=2", nil)
			resp, _ := do(t, e.Client, req)
			// No port: the Service maps the TLS listener to 443.
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || loc != "https://localhost/secure?a=1&b=2" {
				t.Errorf("%s %s/secure?a=1&b=2: %d to %q, want 308 to https://localhost/secure?a=1&b=2", method, e.HTTPURL, resp.StatusCode, loc)
			}
		}
	})

	t.Run("TLS versions and ciphers", func(t *testing.T) {
		tests := []struct {
			name    string
			config  *tls.Config
			wantErr bool
		}{
			{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, true},
			{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, true},
			{"TLS 1.2", &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}, false},
			{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, false},
			{"TLS 1.2 ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305}}, false},
			{"TLS 1.2 AES-256-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}, false},
			{"TLS 1.2 CBC", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, true},
		}
		for _, tt := range tests {
			tt.config.RootCAs = e.CA
			tt.config.ServerName = "localhost"
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.Addr, tt.config)
			if err == nil {
				conn.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("%s handshake: error = %v, want error %v", tt.name, err, tt.wantErr)
			}
		}
	})

	t.Run("request ID", func(t *testing.T) {
		tests := []struct {
			sent string
			keep bool // the ID sent is passed on; else nginx makes one
		}{
			{"", false},
			{"client-id-1.2:3", true},
			{"0123456789abcdef0123456789abcdef", true},
			{"bad id <script>", false},
			{strings.Repeat("x", 129), false},
		}
		for _, tt := range tests {
			req, _ := http.NewRequest("GET", e.URL+"/headers", nil)
			if tt.sent != "" {
				req.Header.Set("X-Request-ID", tt.sent)
			}
			resp, body := do(t, e.Client, req)
			got := resp.Header.Get("X-Request-ID")
			if tt.keep && got != tt.sent || !tt.keep && !hexID.MatchString(got) {
				t.Errorf("GET /headers with X-Request-ID %q: answered with %q, want the same: %v", tt.sent, got, tt.keep)
				continue
			}
			if n := len(resp.Header.Values("X-Request-ID")); n != 1 {
				t.Errorf("GET /headers: %d X-Request-ID headers, want 1", n)
			}
			var seen map[string]string
			if err := json.Unmarshal([]byte(body), &seen); err != nil {
				t.Fatalf("GET /headers: %v: %s", err, body)
			}
			if seen["X-Request-Id"] != got {
				t.Errorf("GET /headers with X-Request-ID %q: hello got %q, client got %q; want the same", tt.sent, seen["X-Request-Id"], got)
			}
			entry := e.WaitLog(t, got)
			if entry.String("upstream_addr") != hello.addr() || entry.String("upstream_status") != "200" ||
				entry.String("app_version") != "1.0.0" || entry.String("status") != "200" ||
				entry.String("request") != "GET /headers HTTP/2.0" || entry.String("tls") != "TLSv1.3" {
				t.Errorf("access log entry %v, want upstream_addr %s, upstream_status 200, app_version 1.0.0, status 200, request \"GET /headers HTTP/2.0\", tls TLSv1.3", entry, hello.addr())
			}
			for _, field := range []string{"request_time", "upstream_response_time"} {
				if entry.String(field) == "" {
					t.Errorf("access log entry %v has no %s", entry, field)
				}
			}
		}
	})

	t.Run("forwarded headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.URL+"/headers", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim, not to be believed
		req.Header.Set("X-Real-IP", "6.6.6.6")
		_, body := do(t, e.Client, req)
		var seen map[string]string
		if err := json.Unmarshal([]byte(body), &seen); err != nil {
			t.Fatalf("GET /headers: %v: %s", err, body)
		}
		want := map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Real-Ip":         "127.0.0.1",
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "localhost",
			"Host":              "localhost",
			"Connection":        "close", // a connection per request
		}
		for k, v := range want {
			if seen[k] != v {
				t.Errorf("hello got %s: %q, want %q", k, seen[k], v)
			}
		}
	})

	// A new upstream connection for every request, so that kube-proxy
	// picks a pod per request (the template's upstreams say why).
	t.Run("a connection per request", func(t *testing.T) {
		before := hello.conns.Load()
		for range 20 {
			get(t, e.Client, e.URL+"/")
		}
		if n := hello.conns.Load() - before; n != 20 {
			t.Errorf("20 requests opened %d connections to hello, want 20: no upstream pool", n)
		}
	})

	t.Run("body too large", func(t *testing.T) {
		resp, body := do(t, e.Client, mustRequest("POST", e.URL+"/login", bytes.NewReader(make([]byte, 65<<10))))
		checkNginxError(t, "POST /login with 65 KiB", resp, body, http.StatusRequestEntityTooLarge)
		resp, _ = do(t, e.Client, mustRequest("POST", e.URL+"/login", bytes.NewReader(make([]byte, 60<<10))))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST /login with 60 KiB: status %d, want auth's 401", resp.StatusCode)
		}
	})

	t.Run("nginx's own errors", func(t *testing.T) {
		resp, body := get(t, e.Client, e.URL+"/_edge/error")
		checkNginxError(t, "GET /_edge/error", resp, body, http.StatusNotFound)

		// Limits on the request line and headers, which HTTP/1.1 clients meet.
		p := new(http.Protocols)
		p.SetHTTP1(true)
		http1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CA}, Protocols: p}, Timeout: 5 * time.Second}
		defer http1.CloseIdleConnections()
		resp, body = get(t, http1, e.URL+"/?q="+strings.Repeat("x", 10<<10))
		checkNginxError(t, "GET with a 10 KiB URI", resp, body, http.StatusRequestURITooLong)
		req := mustRequest("GET", e.URL+"/", nil)
		req.Header.Set("X-Big", strings.Repeat("x", 10<<10))
		resp, body = do(t, http1, req)
		checkNginxError(t, "GET with a 10 KiB header", resp, body, http.StatusBadRequest)
	})

	t.Run("security headers", func(t *testing.T) {
		for _, path := range []string{"/", "/secure", "/nope", "/healthz", "/login"} {
			resp, _ := get(t, e.Client, e.URL+path)
			checkSecurityHeaders(t, "GET "+path, resp)
		}
	})
}

func TestFrontendLoginRateLimit(t *testing.T) {
	auth, hello := startBackend(t, "auth"), startBackend(t, "hello")
	e := startFrontend(t, auth.addr(), hello.addr())
	testLoginRateLimit(t, e)
	// Other routes are not limited.
	for range 30 {
		if resp, _ := get(t, e.Client, e.URL+"/"); resp.StatusCode != 200 {
			t.Fatalf("GET / after the login limit: status %d, want 200", resp.StatusCode)
		}
	}
}

// testLoginRateLimit sends 40 logins at once: the burst of 20, and those
// the rate of 10/s refills while they run, pass; the rest get nginx's JSON
// 429.
func testLoginRateLimit(t *testing.T, e *edgetest.Edge) {
	t.Helper()
	type answer struct {
		resp *http.Response
		body string
	}
	answers := make(chan answer, 40)
	began := time.Now()
	for range 40 {
		go func() {
			req := mustRequest("POST", e.URL+"/login", nil)
			req.SetBasicAuth("user", "password")
			resp, err := e.Client.Do(req)
			if err != nil {
				t.Error(err)
				answers <- answer{resp: &http.Response{}}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
			}
			answers <- answer{resp, string(b)}
		}()
	}
	counts := map[int]int{}
	var limited *answer
	for range 40 {
		a := <-answers
		counts[a.resp.StatusCode]++
		if a.resp.StatusCode == http.StatusTooManyRequests && limited == nil {
			limited = &a
		}
	}
	refilled := int(time.Since(began) / (100 * time.Millisecond))
	if counts[200] < 20 || counts[200] > 21+refilled || counts[429] != 40-counts[200] {
		t.Errorf("40 logins at once in %v: statuses %v, want 20 to %d 200s (the burst and the refill) and the rest 429",
			time.Since(began), counts, 21+refilled)
	}
	if limited != nil {
		checkNginxError(t, "POST /login when limited", limited.resp, limited.body, http.StatusTooManyRequests)
		if got := limited.resp.Header.Values("Retry-After"); len(got) != 1 || got[0] != "1" {
			t.Errorf("POST /login when limited: Retry-After %q, want [\"1\"]", got)
		}
	}
}

func TestFrontendUpstreamDown(t *testing.T) {
	e := startFrontend(t, edgetest.FreeAddr(t), edgetest.FreeAddr(t))
	for _, req := range []*http.Request{
		mustRequest("GET", e.URL+"/", nil),
		mustRequest("GET", e.URL+"/secure", nil),
		mustRequest("POST", e.URL+"/login", strings.NewReader("x")),
	} {
		resp, body := do(t, e.Client, req)
		checkNginxError(t, req.Method+" "+req.URL.Path+" with the service down", resp, body, http.StatusBadGateway)
	}
	if resp, _ := get(t, e.Client, e.URL+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("GET /healthz with the services down: status %d, want 200", resp.StatusCode)
	}
}

// TestFrontendNextUpstream checks the choice of max_fails and
// proxy_next_upstream: with one of two hello instances down, no request
// fails, and when it is back it gets traffic at once, not after nginx's
// default 10 s of considering it down.
func TestFrontendNextUpstream(t *testing.T) {
	auth, live := startBackend(t, "auth"), startBackend(t, "hello-1")
	down := edgetest.FreeAddr(t)
	e := edgetest.Start(t, readConfig(t, "frontend.conf.template"), edge.Params{
		Auth: []string{auth.addr()}, Hello: []string{down, live.addr()}, UIDir: edgetest.UIDir(t),
	})
	for i := range 10 {
		req := mustRequest("GET", e.URL+"/", nil)
		if i%2 == 1 {
			// Not sent anywhere before the connection was refused: retried too.
			req = mustRequest("POST", e.URL+"/post", strings.NewReader("x"))
		}
		resp, body := do(t, e.Client, req)
		if resp.StatusCode >= 500 || resp.Header.Get("X-Pod-Name") != "hello-1" {
			t.Errorf("%s %s with one hello down: status %d from %q, want an answer from hello-1; body %s",
				req.Method, req.URL.Path, resp.StatusCode, resp.Header.Get("X-Pod-Name"), body)
		}
	}
	back := startBackendAt(t, "hello-2", down)
	var fromBack int
	for range 10 {
		if resp, _ := get(t, e.Client, e.URL+"/"); resp.Header.Get("X-Pod-Name") == "hello-2" {
			fromBack++
		}
	}
	if fromBack == 0 || back.requests.Load() == 0 {
		t.Errorf("10 requests after hello-2 came back: %d answered by it, want some (round robin)", fromBack)
	}
}

// TestProxyConf checks the secure-monolith sidecar config.
func TestProxyConf(t *testing.T) {
	monolith := startBackend(t, "monolith")
	e := edgetest.Start(t, readConfig(t, "proxy.conf.template"), edge.Params{Monolith: []string{monolith.addr()}})
	req := mustRequest("POST", e.URL+"/login", nil)
	req.SetBasicAuth("user", "password")
	for _, req := range []*http.Request{mustRequest("GET", e.URL+"/", nil), req, mustRequest("GET", e.URL+"/metrics", nil)} {
		resp, body := do(t, e.Client, req)
		if resp.StatusCode >= 500 || resp.Header.Get("X-Pod-Name") != "monolith" || resp.ProtoMajor != 2 {
			t.Errorf("%s %s: status %d from %q over %s, want an answer from the monolith over HTTP/2; body %s",
				req.Method, req.URL.Path, resp.StatusCode, resp.Header.Get("X-Pod-Name"), resp.Proto, body)
		}
		checkSecurityHeaders(t, req.Method+" "+req.URL.Path, resp)
		if id := resp.Header.Get("X-Request-ID"); !hexID.MatchString(id) {
			t.Errorf("%s %s: X-Request-ID %q, want nginx's", req.Method, req.URL.Path, id)
		}
	}
	if resp, body := get(t, e.Client, e.URL+"/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("GET /healthz: %d %q, want 200 \"ok\\n\"", resp.StatusCode, body)
	}
	resp, body := do(t, e.Client, mustRequest("PUT", e.URL+"/", bytes.NewReader(make([]byte, 100<<10))))
	checkNginxError(t, "PUT / with 100 KiB", resp, body, http.StatusRequestEntityTooLarge)
	testLoginRateLimit(t, e)
}

func TestProxyConfMonolithDown(t *testing.T) {
	e := edgetest.Start(t, readConfig(t, "proxy.conf.template"), edge.Params{Monolith: []string{edgetest.FreeAddr(t)}})
	resp, body := get(t, e.Client, e.URL+"/")
	checkNginxError(t, "GET / with the monolith down", resp, body, http.StatusBadGateway)
}

// TestConfigsAgree checks that proxy.conf.template repeats
// frontend.conf.template's settings: every directive of the first, upstream
// names aside, is in the second. Only the sidecar pools its upstream
// connections: its upstream is the monolith in its own pod, while the
// frontend opens one per request for kube-proxy to balance.
func TestConfigsAgree(t *testing.T) {
	upstream := regexp.MustCompile(`http://[a-z]+_app;`)
	lines := func(conf string) map[string]bool {
		set := map[string]bool{}
		for line := range strings.Lines(withoutComments(conf)) {
			line = strings.TrimSpace(line)
			if i := strings.Index(line, " #"); i >= 0 {
				line = strings.TrimSpace(line[:i])
			}
			set[upstream.ReplaceAllString(line, "http://UPSTREAM;")] = true
		}
		return set
	}
	frontend := lines(readConfig(t, "frontend.conf.template"))
	sidecarOnly := map[string]bool{
		"upstream monolith_app {": true, "${EDGE_MONOLITH_SERVERS}": true,
		"keepalive 16;": true, "keepalive_timeout 60s;": true, "keepalive_time 10s;": true,
		`proxy_set_header Connection "";`: true,
	}
	for line := range lines(readConfig(t, "proxy.conf.template")) {
		if !frontend[line] && !sidecarOnly[line] {
			t.Errorf("proxy.conf.template has %q, which frontend.conf.template has not: change both together", line)
		}
	}
}

func startFrontend(t *testing.T, auth, hello string) *edgetest.Edge {
	t.Helper()
	return edgetest.Start(t, readConfig(t, "frontend.conf.template"), edge.Params{
		Auth: []string{auth}, Hello: []string{hello}, UIDir: edgetest.UIDir(t),
	})
}

// checkNginxError checks an error nginx answered itself: JSON, with the
// security headers.
func checkNginxError(t *testing.T, call string, resp *http.Response, body string, want int) {
	t.Helper()
	var got struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != want {
		t.Errorf("%s: status %d, want %d; body %s", call, resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", call, ct)
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Error == "" || got.Error == "error" {
		t.Errorf("%s: body %q, want JSON {\"error\":\"<what went wrong>\"}", call, body)
	}
	checkSecurityHeaders(t, call, resp)
	if id := resp.Header.Get("X-Request-ID"); !hexID.MatchString(id) {
		t.Errorf("%s: X-Request-ID %q, want nginx's request ID", call, id)
	}
}

func checkSecurityHeaders(t *testing.T, call string, resp *http.Response) {
	t.Helper()
	for k, want := range securityHeaders {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s (status %d): %s = %q, want [%q]", call, resp.StatusCode, k, got, want)
		}
	}
}

// backend stands in for a service's app port: it answers as auth, hello
// and the monolith do, and echoes the request's headers on /headers.
type backend struct {
	name     string
	srv      *httptest.Server
	requests atomic.Int64  // requests served
	conns    atomic.Int64  // connections accepted
	slow     atomic.Int64  // requests waiting in /slow
	release  chan struct{} // closing it ends the waits in /slow
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	return startBackendAt(t, name, "127.0.0.1:0")
}

func startBackendAt(t *testing.T, name, addr string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, release: make(chan struct{})}
	b.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: b}}
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)) //nolint:errcheck // draining only
	h := w.Header()
	h.Set("X-App-Version", "1.0.0")
	h.Set("X-Pod-Name", b.name)
	id := r.Header.Get("X-Request-ID")
	if id == "" {
		id = "made-up-by-" + b.name
	}
	h.Set("X-Request-ID", id)
	reply := func(status int, v any) {
		h.Set("Content-Type", "application/json")
		h.Set("X-Content-Type-Options", "nosniff") // as internal/respond does
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v) //nolint:errcheck // the client may be gone
	}
	switch {
	case r.URL.Path == "/login" && (b.name == "auth" || b.name == "monolith"):
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "password" {
			h.Set("WWW-Authenticate", `Basic realm="app"`)
			reply(http.StatusUnauthorized, map[string]string{"error": "authorization failed"})
			return
		}
		reply(http.StatusOK, map[string]string{"token": "t"})
	case b.name == "auth":
		reply(http.StatusNotFound, map[string]string{"error": "not found"})
	case r.URL.Path == "/":
		reply(http.StatusOK, map[string]string{"message": "Hello"})
	case r.URL.Path == "/post" && r.Method == http.MethodPost:
		reply(http.StatusOK, map[string]string{"message": "posted"})
	case r.URL.Path == "/version":
		reply(http.StatusOK, map[string]string{"service": b.name, "version": "1.0.0"})
	case r.URL.Path == "/secure":
		h.Set("WWW-Authenticate", `Bearer realm="app", error="invalid_token"`)
		reply(http.StatusUnauthorized, map[string]string{"error": "authorization failed"})
	case r.URL.Path == "/slow":
		// Held until the test closes release: a request in progress.
		b.slow.Add(1)
		defer b.slow.Add(-1)
		select {
		case <-b.release:
		case <-r.Context().Done():
		}
		reply(http.StatusOK, map[string]string{"message": "slow"})
	case r.URL.Path == "/busy":
		// A service's own 429, with its own Retry-After.
		h.Set("Retry-After", "7")
		reply(http.StatusTooManyRequests, map[string]string{"error": "too many requests"})
	case r.URL.Path == "/headers":
		seen := map[string]string{"Host": r.Host}
		for k := range r.Header {
			seen[k] = r.Header.Get(k)
		}
		reply(http.StatusOK, seen)
	default:
		reply(http.StatusNotFound, map[string]string{"error": "not found"})
	}
}

func mustRequest(method, url string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		panic(fmt.Sprintf("http.NewRequest(%q, %q): %v", method, url, err))
	}
	return req
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	return do(t, c, mustRequest("GET", url, nil))
}

// do sends req and returns the response with its body read.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}
