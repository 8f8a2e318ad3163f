package edge_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/edge"
	"example.com/app/internal/edge/edgetest"
)

// connLimit is limit_conn's number in both templates.
const connLimit = 128

// TestConnLimit checks the per-client limit_conn of both templates: a client
// with more requests in progress than the limit gets nginx's 429 with
// Retry-After for the rest, over HTTP/1.1 (a connection each) and over
// HTTP/2 (streams of one connection), while another client is served.
func TestConnLimit(t *testing.T) {
	for _, tmpl := range []string{"frontend.conf.template", "proxy.conf.template"} {
		for _, http2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s HTTP/2 %v", tmpl, http2), func(t *testing.T) {
				b := startBackend(t, "hello")
				e := edgetest.Start(t, readConfig(t, tmpl), edge.Params{
					Auth: []string{b.addr()}, Hello: []string{b.addr()}, Monolith: []string{b.addr()}, UIDir: edgetest.UIDir(t),
				})
				testConnLimit(t, e, b, http2)
			})
		}
	}
}

func testConnLimit(t *testing.T, e *edgetest.Edge, b *backend, http2 bool) {
	const sent = connLimit + 16
	greedy := clientFrom(t, e, "127.0.0.1", http2)
	other := clientFrom(t, e, "127.0.0.2", http2) // another client: all of 127/8 is loopback

	type answer struct {
		status     int
		retryAfter string
		body       string
	}
	answers := make(chan answer, sent)
	for range sent {
		go func() {
			resp, err := greedy.Get(e.URL + "/slow")
			if err != nil {
				t.Error(err)
				answers <- answer{}
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body) //nolint:errcheck // the status is what counts
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(body)}
		}()
	}
	// The requests over the limit are answered at once; the others wait in
	// the service until released.
	counts := map[int]int{}
	for range sent - connLimit {
		a := <-answers
		counts[a.status]++
		if a.status == http.StatusTooManyRequests && (a.retryAfter != "1" || !strings.Contains(a.body, `"too many requests"`)) {
			t.Errorf("GET /slow over the limit: 429 with Retry-After %q and body %q, want Retry-After 1 and nginx's JSON error", a.retryAfter, a.body)
		}
	}
	if counts[http.StatusTooManyRequests] != sent-connLimit {
		t.Errorf("%d requests at once from one client: the first %d answers were %v, want %d 429s", sent, sent-connLimit, counts, sent-connLimit)
	}
	for deadline := time.Now().Add(5 * time.Second); b.slow.Load() != connLimit; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests at once from one client: %d reached the service, want the limit, %d", sent, b.slow.Load(), connLimit)
		}
	}
	if resp, body := get(t, other, e.URL+"/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / from another client while the first is at its limit: %d %s, want 200", resp.StatusCode, body)
	}
	if resp, _ := get(t, greedy, e.URL+"/"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("GET / from the client at its limit: %d, want 429", resp.StatusCode)
	}
	close(b.release)
	for range connLimit {
		if a := <-answers; a.status != http.StatusOK {
			t.Errorf("GET /slow within the limit: %d %s, want 200", a.status, a.body)
		}
	}
	if resp, _ := get(t, greedy, e.URL+"/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / once the client's requests have ended: %d, want 200", resp.StatusCode)
	}
}

// clientFrom returns a client of e whose connections come from the loopback
// address local, speaking HTTP/2 or HTTP/1.1 (a connection per request in
// progress).
func clientFrom(t *testing.T, e *edgetest.Edge, local string, http2 bool) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	p := new(http.Protocols)
	p.SetHTTP1(!http2)
	p.SetHTTP2(http2)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.CA}, DialContext: d.DialContext, Protocols: p, MaxIdleConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestHalfOpenConnections shows what limit_conn does not count, and what
// closes it instead: TLS connections that never finish the handshake are
// not requests in progress, so the same client is still served beside
// them; nginx closes them after client_header_timeout (10 s).
func TestHalfOpenConnections(t *testing.T) {
	t.Parallel()
	const halfOpen = 2 * connLimit
	b := startBackend(t, "hello")
	e := startFrontend(t, b.addr(), b.addr())
	closed := make(chan time.Duration, halfOpen)
	began := time.Now()
	for range halfOpen {
		c, err := net.Dial("tcp", e.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// The start of a ClientHello: a handshake record of 512 bytes, 3 sent.
		if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01}); err != nil {
			t.Fatal(err)
		}
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second)) //nolint:errcheck // a net.Conn's deadline
			_, err := c.Read(make([]byte, 1))
			if err == nil || os.IsTimeout(err) {
				closed <- -1
				return
			}
			closed <- time.Since(began)
		}()
	}
	if resp, body := get(t, e.Client, e.URL+"/"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / beside %d half-open connections from the same address: %d %s, want 200", halfOpen, resp.StatusCode, body)
	}
	var last time.Duration
	for range halfOpen {
		d := <-closed
		if d < 0 {
			t.Fatalf("a half-open connection was not closed by nginx within 30 s, want within client_header_timeout (10 s)")
		}
		last = max(last, d)
	}
	t.Logf("nginx %s closed %d half-open TLS connections, the last after %v", e.Version, halfOpen, last.Round(100*time.Millisecond))
	if last < 9*time.Second || last > 15*time.Second {
		t.Errorf("nginx closed the half-open connections after up to %v, want about client_header_timeout, 10 s", last)
	}
}

// TestAccessLogLeavesOutQueries checks that a token pasted into a URL does
// not reach the access log, while the path does.
func TestAccessLogLeavesOutQueries(t *testing.T) {
	auth, hello, monolith := startBackend(t, "auth"), startBackend(t, "hello"), startBackend(t, "monolith")
	const secret = "eyJhbGciOiJFZERTQSJ9.c2VjcmV0.c2ln"
	for _, tmpl := range []string{"frontend.conf.template", "proxy.conf.template"} {
		e := edgetest.Start(t, readConfig(t, tmpl), edge.Params{
			Auth: []string{auth.addr()}, Hello: []string{hello.addr()}, Monolith: []string{monolith.addr()}, UIDir: edgetest.UIDir(t),
		})
		tests := []struct {
			method, path, want string
			status             int
		}{
			{"GET", "/secure?token=" + secret, "GET /secure HTTP/2.0", http.StatusUnauthorized},
			{"GET", "/?a=1&token=" + secret + "&b", "GET / HTTP/2.0", http.StatusOK},
			{"POST", "/login?token=" + secret, "POST /login HTTP/2.0", http.StatusUnauthorized},
			{"GET", "/_edge/error?token=" + secret, "GET /_edge/error HTTP/2.0", http.StatusNotFound},
		}
		for _, tt := range tests {
			resp, _ := do(t, e.Client, mustRequest(tt.method, e.URL+tt.path, nil))
			if resp.StatusCode != tt.status {
				t.Errorf("%s: %s %s: status %d, want %d", tmpl, tt.method, tt.path, resp.StatusCode, tt.status)
			}
			if got := e.WaitLog(t, resp.Header.Get("X-Request-ID")).String("request"); got != tt.want {
				t.Errorf("%s: %s %s: access log request %q, want %q", tmpl, tt.method, tt.path, got, tt.want)
			}
		}
		for _, entry := range e.AccessLog(t) {
			if line := fmt.Sprint(entry); strings.Contains(line, secret) || strings.Contains(line, "token=") {
				t.Errorf("%s: access log entry %s has the query string", tmpl, line)
			}
		}
	}
}

// TestRedirectHost checks that the redirect to HTTPS names the request's
// host only if it is a DNS name or an IP address, whatever else a client
// puts in Host or in the request line.
func TestRedirectHost(t *testing.T) {
	b := startBackend(t, "hello")
	e := startFrontend(t, b.addr(), b.addr())
	addr := strings.TrimPrefix(e.HTTPURL, "http://")
	tests := []struct {
		target, host string
		want         string // Location; "" for a 400
	}{
		{"/secure?a=1", "localhost", "https://localhost/secure?a=1"},
		{"/", "LocalHost:8080", "https://localhost/"},
		{"/", "app.example.com.", "https://app.example.com/"},
		{"/x", "203.0.113.7", "https://203.0.113.7/x"},
		{"/x", "[2001:db8::1]:80", "https://[2001:db8::1]/x"},
		{"/", "xn--bcher-kva.example", "https://xn--bcher-kva.example/"},
		// Hostile: each would bend the Location to another place.
		{"/", "evil.example@localhost", ""},
		{"/", `localhost\@evil.example`, ""},
		{"/", "localhost%2f@evil.example", ""},
		{"/", "localhost#@evil.example", ""},
		{"/", "localhost?@evil.example", ""},
		{"/", "-bad-.example", ""},
		{"/", strings.Repeat("a", 64) + ".example", ""},
		{"/", strings.Repeat("a.", 127) + "ab", ""},
		{"/", "[v1.evil]", ""},
		{"http://evil.example@localhost/", "localhost", ""}, // the request line's host wins over Host
		{"/", "", ""},
	}
	for _, tt := range tests {
		status, location := rawRequest(t, addr, "GET "+tt.target+" HTTP/1.1\r\nHost: "+tt.host+"\r\nConnection: close\r\n\r\n")
		switch {
		case tt.want != "" && (status != http.StatusPermanentRedirect || location != tt.want):
			t.Errorf("GET %s with Host %q: %d to %q, want 308 to %q", tt.target, tt.host, status, location, tt.want)
		case tt.want == "" && (status != http.StatusBadRequest || location != ""):
			t.Errorf("GET %s with Host %q: %d to %q, want 400 and no redirect", tt.target, tt.host, status, location)
		}
	}
}

// rawRequest sends req over a new connection to addr and returns the
// answer's status and Location: clients such as Go's refuse to send most of
// the Host values worth testing.
func rawRequest(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a net.Conn's deadline
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: reading the answer: %v", req, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestClientKey checks the map that makes the limits' key, $edge_client:
// the /64 of an IPv6 address, in every form, and an IPv4 address itself.
// Only nginx's own connections set $remote_addr, and the only source
// addresses here are loopback ones, so the test runs the template's map
// block twice in one nginx: as it is, answering for the real client
// addresses 127.0.0.1 and ::1, and with its input $remote_addr swapped for
// a request header, answering for the addresses below. The regexes are the
// template's, run by nginx's PCRE.
func TestClientKey(t *testing.T) {
	bin := edgetest.Binary(t)
	site, err := edge.Params{
		HTTPSListen: "127.0.0.1:1", HTTPListen: "127.0.0.1:2", TLSDir: "/tls", HTTP2: edge.HTTP2Parameter, UIDir: "/ui", DrainFile: "/tmp/draining",
		Auth: []string{"127.0.0.1:3"}, Hello: []string{"127.0.0.1:4"},
	}.Render(readConfig(t, "frontend.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	block := mapBlock(t, site, "map $remote_addr $edge_client {")
	crafted := strings.NewReplacer("map $remote_addr $edge_client {", "map $http_x_addr $edge_client_crafted {", "default $remote_addr;", "default $http_x_addr;").Replace(block)
	if crafted == block || strings.Contains(crafted, "$remote_addr") {
		t.Fatalf("could not swap the map's input:\n%s", crafted)
	}
	v4, v6 := edgetest.FreeAddr(t), freeIPv6Loopback(t)
	listen, ready, realClients := "    listen "+v4+";\n", []string{v4}, map[string]string{"http://" + v4 + "/real": "127.0.0.1"}
	if v6 != "" {
		listen += "    listen " + v6 + ";\n"
		ready = append(ready, v6)
		realClients["http://"+v6+"/real"] = "0:0:0:0"
	}
	conf := block + crafted + `
server {
` + listen + `    location = /real { return 200 "$edge_client"; }
    location = /crafted { return 200 "$edge_client_crafted"; }
}
`
	n := &edge.Nginx{Binary: bin, Dir: t.TempDir(), Site: conf}
	proc, err := n.Start(t.Context(), ready...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(5 * time.Second) }) //nolint:errcheck // the test is over

	ask := func(url, addr string) string {
		t.Helper()
		req := mustRequest("GET", url, nil)
		req.Header.Set("X-Addr", addr)
		resp, body := do(t, http.DefaultClient, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
		}
		return body
	}
	for url, want := range realClients {
		if got := ask(url, ""); got != want {
			t.Errorf("$edge_client of a client connecting to %s = %q, want %q", url, got, want)
		}
	}
	tests := []struct{ addr, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"10.1.2.3", "10.1.2.3"},
		{"::ffff:198.51.100.7", "198.51.100.7"},
		{"2001:db8::1", "2001:db8:0:0"},
		{"2001:db8::", "2001:db8:0:0"},
		{"2001:db8:0:1::5", "2001:db8:0:1"},
		{"2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8:0:1"},
		{"2001:0db8:0000:0001:0000:0000:0000:0005", "2001:db8:0:1"},
		{"2001:db8:aa:bb:cc:dd:ee:ff", "2001:db8:aa:bb"},
		{"2001:db8:1:2::", "2001:db8:1:2"},
		{"2001:db8:1::", "2001:db8:1:0"},
		{"2001:db8:1::2", "2001:db8:1:0"},
		{"2001:db8:1::2:3:4:5", "2001:db8:1:0"},
		{"2001:db8::2:3:4:5:6", "2001:db8:0:2"},
		{"2001::2:3:4:5:6", "2001:0:0:2"},
		{"2001::3:4:5:6:7", "2001:0:0:3"},
		{"2001::3:4:5:6:7:8", "2001:0:3:4"},
		{"2001::3:4:5", "2001:0:0:0"},
		{"fe80::1", "fe80:0:0:0"},
		{"::1", "0:0:0:0"},
		{"::", "0:0:0:0"},
		{"::2:3:4:5", "0:0:0:0"},
		{"::2:3:4:5:6", "0:0:0:2"},
		{"::2:3:4:5:6:7", "0:0:2:3"},
		{"::2:3:4:5:6:7:8", "0:2:3:4"},
		{"::2:3:4:5:6.7.8.9", "0:0:2:3"},
		{"::2:3:4:6.7.8.9", "0:0:0:2"},
		{"::2:3:6.7.8.9", "0:0:0:0"},
		{"64:ff9b::192.0.2.33", "64:ff9b:0:0"},
		{"1:2:3:4:5:6:1.2.3.4", "1:2:3:4"},
	}
	for _, tt := range tests {
		if got := ask("http://"+v4+"/crafted", tt.addr); got != tt.want {
			t.Errorf("$edge_client of %s = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// freeIPv6Loopback returns a free port on ::1 as "[::1]:port", or "" (and
// says so) if this host has no IPv6 loopback address.
func freeIPv6Loopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 loopback (%v): $edge_client of a real IPv6 client is not checked", err)
		return ""
	}
	defer l.Close() // only choosing a number
	return l.Addr().String()
}

// mapBlock returns the map block of conf that begins with the line head.
func mapBlock(t *testing.T, conf, head string) string {
	t.Helper()
	i := strings.Index(conf, head)
	if i < 0 {
		t.Fatalf("no %q in the config", head)
	}
	n := strings.Index(conf[i:], "\n}\n")
	if n < 0 {
		t.Fatalf("%q has no end", head)
	}
	return conf[i:i+n+3] + "\n"
}

// TestRetryAfter checks Retry-After on the 429s: nginx's own carry one, a
// service's keeps its own and gets no second, and other answers have none.
func TestRetryAfter(t *testing.T) {
	b := startBackend(t, "hello")
	e := startFrontend(t, b.addr(), b.addr())
	resp, _ := get(t, e.Client, e.URL+"/busy")
	if got := resp.Header.Values("Retry-After"); resp.StatusCode != http.StatusTooManyRequests || len(got) != 1 || got[0] != "7" {
		t.Errorf("GET /busy, the service's 429: status %d, Retry-After %q, want 429 with the service's [\"7\"] only", resp.StatusCode, got)
	}
	for _, path := range []string{"/", "/nope", "/_edge/error"} {
		if resp, _ := get(t, e.Client, e.URL+path); resp.Header.Get("Retry-After") != "" {
			t.Errorf("GET %s: status %d with Retry-After %q, want none", path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	// nginx's own 429s carry Retry-After: 1, checked by testLoginRateLimit
	// (limit_req) and testConnLimit (limit_conn).
}
