package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"example.com/app/internal/baseline"
	"example.com/app/internal/config"
	"example.com/app/internal/logging"
	"example.com/app/internal/service"
	"example.com/app/internal/service/servicetest"
	"example.com/app/internal/token"
)

// The benchmarks compare the whole hello service (request ID, headers,
// access log, metrics, recover, body limit, router, token cache) with the
// independent baselines of package baseline (a bare handler; the same with a
// golang-jwt verify of the same Ed25519 token on every request), in one run;
// and hello verifying Ed25519 tokens through its cache with hello as it was,
// verifying HS256 on every request. `make bench` runs them; `make
// bench-http` measures the same over real sockets, through the TLS edge too.

const benchKey = "bench-key-0123456789abcdef0123456789"

type bench struct {
	full, previous, bareSecure, bareHello http.Handler
	token, hs256Token                     string
}

// newService builds hello from env, as the binary would.
func newService(b *testing.B, env map[string]string) *service.App {
	b.Helper()
	cfg, err := config.Parse([]string{"hello"}, func(k string) string { return env[k] }, io.Discard, 0)
	if err != nil {
		b.Fatal(err)
	}
	// The access log is real: JSON lines, buffered, written to /dev/null.
	logger, flush, err := logging.New(io.Discard, logging.Options{Level: "info", Format: "json"}, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(flush)
	app, err := service.New(hello(), cfg, logger, logger)
	if err != nil {
		b.Fatal(err)
	}
	return app
}

func newBench(b *testing.B) bench {
	b.Helper()
	_, public, key := servicetest.KeyFiles(b)
	full := newService(b, map[string]string{"JWT_PUBLIC_KEYS_FILE": public})
	// hello before Ed25519: HS256, verified on every request.
	previous := newService(b, map[string]string{"JWT_SECRET": benchKey, "TOKEN_CACHE_SIZE": "0"})
	opts := token.Options{Issuer: "auth.service", Audience: "app", TTL: time.Hour}
	issue := func(k token.Key) string {
		i, err := token.NewIssuer(k, opts)
		if err != nil {
			b.Fatal(err)
		}
		tok, _, err := i.Issue("user", "user@example.com")
		if err != nil {
			b.Fatal(err)
		}
		return tok
	}
	hmacKey, err := token.HMACKey([]byte(benchKey))
	if err != nil {
		b.Fatal(err)
	}
	tok, hsTok := issue(key), issue(hmacKey)
	pem, err := os.ReadFile(public)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := jwt.ParseEdPublicKeyFromPEM(pem)
	if err != nil {
		b.Fatal(err)
	}
	bareSecure := baseline.JWT(pub, opts.Issuer, opts.Audience)
	bareHello := baseline.Plain()
	return bench{full: full.API, previous: previous.API, bareSecure: bareSecure, bareHello: bareHello, token: tok, hs256Token: hsTok}
}

// discard is a ResponseWriter that keeps nothing, so that the benchmark
// measures the handlers, not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func serveLoop(b *testing.B, h http.Handler, path, authorization string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// BenchmarkSecure: GET /secure with a valid token, in process.
func BenchmarkSecure(b *testing.B) {
	bb := newBench(b)
	b.Run("full", func(b *testing.B) { serveLoop(b, bb.full, "/secure", "Bearer "+bb.token) })
	b.Run("previous-hs256", func(b *testing.B) { serveLoop(b, bb.previous, "/secure", "Bearer "+bb.hs256Token) })
	b.Run("bare", func(b *testing.B) { serveLoop(b, bb.bareSecure, "/secure", "Bearer "+bb.token) })
}

// BenchmarkHello: GET /, in process.
func BenchmarkHello(b *testing.B) {
	bb := newBench(b)
	b.Run("full", func(b *testing.B) { serveLoop(b, bb.full, "/", "") })
	b.Run("bare", func(b *testing.B) { serveLoop(b, bb.bareHello, "/", "") })
}

// BenchmarkRatio interleaves full and bare (baseline) requests in one loop,
// so that both see the same machine, and reports full/bare throughput: 1
// means the service costs what the baseline does. Goals: /secure ≥ 0.95
// over HTTP, / ≥ 0.9.
func BenchmarkRatio(b *testing.B) {
	bb := newBench(b)
	for _, tt := range []struct {
		name, path, auth, bareAuth string
		bare                       http.Handler
	}{
		{"secure", "/secure", "Bearer " + bb.token, "Bearer " + bb.token, bb.bareSecure},
		{"hello", "/", "", "", bb.bareHello},
	} {
		b.Run(tt.name+"/in-process", func(b *testing.B) {
			ratio(b, "full", inProcess(bb.full, tt.path, tt.auth), "bare", inProcess(tt.bare, tt.path, tt.bareAuth))
		})
		b.Run(tt.name+"/http", func(b *testing.B) {
			ratio(b, "full", overHTTP(b, bb.full, tt.path, tt.auth), "bare", overHTTP(b, tt.bare, tt.path, tt.bareAuth))
		})
	}
}

// BenchmarkSecureKeys: GET /secure through the whole hello service, verifying
// an Ed25519 token through the verified-token cache, against hello as it was
// (HS256, verified on every request), interleaved in one run. The goal:
// ed25519-cached/hs256-previous throughput ≥ 0.95.
func BenchmarkSecureKeys(b *testing.B) {
	bb := newBench(b)
	b.Run("in-process", func(b *testing.B) {
		ratio(b, "ed25519-cached", inProcess(bb.full, "/secure", "Bearer "+bb.token),
			"hs256-previous", inProcess(bb.previous, "/secure", "Bearer "+bb.hs256Token))
	})
	b.Run("http", func(b *testing.B) {
		ratio(b, "ed25519-cached", overHTTP(b, bb.full, "/secure", "Bearer "+bb.token),
			"hs256-previous", overHTTP(b, bb.previous, "/secure", "Bearer "+bb.hs256Token))
	})
}

// inProcess returns a function serving one request to h in process.
func inProcess(h http.Handler, path, authorization string) func() {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	w := &discard{h: make(http.Header)}
	return func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// overHTTP returns a function sending one request to h over a real
// loopback connection, failing unless it gets 200.
func overHTTP(b *testing.B, h http.Handler, path, authorization string) func() {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	client := srv.Client()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return func() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // benchmark
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// ratio times doA and doB alternately in batches and reports each one's
// ns/op and the throughput ratio a/b.
func ratio(b *testing.B, nameA string, doA func(), nameB string, doB func()) {
	const batch = 64
	var tA, tB time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		for range batch {
			doA()
		}
		mid := time.Now()
		for range batch {
			doB()
		}
		tB += time.Since(mid)
		tA += mid.Sub(start)
		n += batch
	}
	b.ReportMetric(float64(tA.Nanoseconds())/float64(n), nameA+"-ns/req")
	b.ReportMetric(float64(tB.Nanoseconds())/float64(n), nameB+"-ns/req")
	b.ReportMetric(tB.Seconds()/tA.Seconds(), nameA+"/"+nameB+"-throughput")
}
