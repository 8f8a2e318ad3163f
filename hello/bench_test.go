package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/config"
	"example.com/app/internal/logging"
	"example.com/app/internal/service"
	"example.com/app/internal/token"
)

// The benchmarks compare the whole hello service (request ID, headers,
// access log, metrics, recover, body limit, router) with bare handlers that
// do only the work itself, in one run, so that the ratio says what the
// middleware costs. `make bench` runs them.

const benchKey = "bench-key-0123456789abcdef0123456789"

type bench struct {
	full, bareSecure, bareHello http.Handler
	token                       string
}

func newBench(b *testing.B) bench {
	b.Helper()
	cfg, err := config.Parse([]string{"hello"}, func(k string) string {
		return map[string]string{"JWT_SECRET": benchKey}[k]
	}, io.Discard, 0)
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
	signer, err := token.NewSigner([]byte(benchKey), cfg.Token)
	if err != nil {
		b.Fatal(err)
	}
	tok, _, err := signer.Issue("user", "user@example.com")
	if err != nil {
		b.Fatal(err)
	}
	type greeting struct {
		Message string `json:"message"`
		User    string `json:"user"`
	}
	bareSecure := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, err := signer.Verify(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := json.Marshal(greeting{"Hello", claims.Subject})
		w.Header().Set("Content-Type", "application/json")
		w.Write(body) //nolint:errcheck // benchmark
	})
	bareHello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"message":"Hello"}` + "\n")) //nolint:errcheck // benchmark
	})
	return bench{full: app.API, bareSecure: bareSecure, bareHello: bareHello, token: tok}
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
	b.Run("bare", func(b *testing.B) { serveLoop(b, bb.bareSecure, "/secure", "Bearer "+bb.token) })
}

// BenchmarkHello: GET /, in process.
func BenchmarkHello(b *testing.B) {
	bb := newBench(b)
	b.Run("full", func(b *testing.B) { serveLoop(b, bb.full, "/", "") })
	b.Run("bare", func(b *testing.B) { serveLoop(b, bb.bareHello, "/", "") })
}

// BenchmarkRatio interleaves full and bare requests in one loop, so that
// both see the same machine, and reports bare/full throughput: 1 means the
// middleware is free. Targets: /secure ≥ 0.95 over HTTP, / ≥ 0.9.
func BenchmarkRatio(b *testing.B) {
	bb := newBench(b)
	for _, tt := range []struct {
		name, path, auth string
		bare             http.Handler
	}{
		{"secure", "/secure", "Bearer " + bb.token, bb.bareSecure},
		{"hello", "/", "", bb.bareHello},
	} {
		b.Run(tt.name+"/in-process", func(b *testing.B) {
			ratio(b, func(h http.Handler) func() {
				req := httptest.NewRequest(http.MethodGet, tt.path, nil)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				w := &discard{h: make(http.Header)}
				return func() { clear(w.h); h.ServeHTTP(w, req) }
			}, bb.full, tt.bare)
		})
		b.Run(tt.name+"/http", func(b *testing.B) {
			ratio(b, func(h http.Handler) func() {
				srv := httptest.NewServer(h)
				b.Cleanup(srv.Close)
				client := srv.Client()
				req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
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
			}, bb.full, tt.bare)
		})
	}
}

// ratio times do(full) and do(bare) alternately in batches and reports each
// one's ns/op and the throughput ratio full/bare.
func ratio(b *testing.B, prepare func(http.Handler) func(), full, bare http.Handler) {
	doFull, doBare := prepare(full), prepare(bare)
	const batch = 64
	var tFull, tBare time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		for range batch {
			doFull()
		}
		mid := time.Now()
		for range batch {
			doBare()
		}
		tBare += time.Since(mid)
		tFull += mid.Sub(start)
		n += batch
	}
	b.ReportMetric(float64(tFull.Nanoseconds())/float64(n), "full-ns/req")
	b.ReportMetric(float64(tBare.Nanoseconds())/float64(n), "bare-ns/req")
	b.ReportMetric(tBare.Seconds()/tFull.Seconds(), "full/bare-throughput")
}
