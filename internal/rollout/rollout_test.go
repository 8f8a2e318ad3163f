package rollout_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"example.com/app/internal/rollout"
)

// attack runs rollout.Run against url at 50 requests/s for d and returns the
// report; the output goes to the test log.
func attack(t *testing.T, url string, d, timeout time.Duration) *rollout.Report {
	t.Helper()
	var out bytes.Buffer
	rep, err := rollout.Run(t.Context(), &out, rollout.Options{
		URL:      url,
		Rate:     50,
		Workers:  4,
		Duration: d,
		Timeout:  timeout,
	})
	t.Logf("output:\n%s", &out)
	if err != nil {
		t.Fatalf("Run(%s) error = %v", url, err)
	}
	return rep
}

func versionNames(rep *rollout.Report) []string {
	var names []string
	for _, v := range rep.Versions {
		names = append(names, v.Version)
	}
	return names
}

func TestHealthy(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(rollout.VersionHeader, "1.0.0")
		w.Write([]byte(`{"service":"hello","version":"1.0.0"}`))
	}))
	defer srv.Close()

	rep := attack(t, srv.URL+"/version", 1200*time.Millisecond, time.Second)
	if rep.Failures.Total() != 0 {
		t.Errorf("failures = %+v, want none", rep.Failures)
	}
	if rep.Requests < 50 || rep.Requests > 70 { // 1.2 s at 50/s
		t.Errorf("requests = %d, want about 60", rep.Requests)
	}
	if len(rep.Versions) != 1 || rep.Versions[0].Version != "1.0.0" || rep.Versions[0].Count != rep.Requests {
		t.Errorf("versions = %+v, want 1.0.0 for all %d requests", rep.Versions, rep.Requests)
	}
	if len(rep.Seconds) < 1 || rep.Seconds[0].Requests < 40 {
		t.Errorf("seconds = %+v, want a first second of about 50 requests", rep.Seconds)
	}
	if rep.P50 <= 0 || rep.P99 < rep.P50 || rep.Max < rep.P99 {
		t.Errorf("latencies p50=%s p99=%s max=%s, want 0 < p50 <= p99 <= max", rep.P50, rep.P99, rep.Max)
	}
	if rep.Rate < 45 || rep.Rate > 55 {
		t.Errorf("rate = %.1f/s, want about 50", rep.Rate)
	}
}

func TestSomeRequestsFail(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(rollout.VersionHeader, "1.0.0")
		switch n.Add(1) % 5 {
		case 0:
			http.Error(w, "boom", http.StatusInternalServerError)
		case 1:
			http.Error(w, "no", http.StatusUnauthorized)
		}
	}))
	defer srv.Close()

	rep := attack(t, srv.URL+"/version", time.Second, time.Second)
	f := rep.Failures
	if f.Status5xx == 0 || f.Status4xx == 0 {
		t.Errorf("failures = %+v, want some 5xx and some 4xx", f)
	}
	if f.Connect+f.Timeout+f.Other != 0 {
		t.Errorf("failures = %+v, want only 5xx and 4xx", f)
	}
	if got, want := f.Total(), rep.Requests*2/5; got < want-2 || got > want+2 {
		t.Errorf("failed %d of %d requests, want about 2 in 5", got, rep.Requests)
	}
}

func TestVersionChangesMidRun(t *testing.T) {
	t.Parallel()
	var v2 atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No header: the version comes from the body.
		if v2.Load() {
			w.Write([]byte(`{"service":"hello","version":"2.0.0"}`))
			return
		}
		w.Write([]byte(`{"service":"hello","version":"1.0.0"}`))
	}))
	defer srv.Close()
	time.AfterFunc(500*time.Millisecond, func() { v2.Store(true) })

	rep := attack(t, srv.URL+"/version", 1200*time.Millisecond, time.Second)
	if got := strings.Join(versionNames(rep), " "); got != "1.0.0 2.0.0" {
		t.Fatalf("versions = %q, want %q", got, "1.0.0 2.0.0")
	}
	old, new := rep.Versions[0], rep.Versions[1]
	if old.Count < 15 || new.Count < 15 || old.Count+new.Count != rep.Requests {
		t.Errorf("versions = %+v, want both about half of %d requests", rep.Versions, rep.Requests)
	}
	if old.Last > new.First+50*time.Millisecond {
		t.Errorf("1.0.0 last seen at %s, 2.0.0 first seen at %s: want 1.0.0 to stop when 2.0.0 starts", old.Last, new.First)
	}
	if last := rep.Seconds[len(rep.Seconds)-1]; len(last.Versions) != 1 || last.Versions[0].Version != "2.0.0" {
		t.Errorf("last second's versions = %+v, want only 2.0.0", last.Versions)
	}
}

func TestServerClosedMidRun(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	time.AfterFunc(400*time.Millisecond, srv.Close)

	rep := attack(t, srv.URL+"/version", time.Second, time.Second)
	f := rep.Failures
	if f.Connect < 20 { // the last 0.6 s of 1 s at 50/s
		t.Errorf("failures = %+v, want about 30 connect errors", f)
	}
	if f.Timeout != 0 || f.Status5xx != 0 || f.Status4xx != 0 {
		t.Errorf("failures = %+v, want no timeouts or status errors", f)
	}
	// A request sent as Close shuts a kept-alive connection can be reset
	// first (seen under load), so any of the errors may say refused.
	if !strings.Contains(strings.Join(rep.Errors, "\n"), "connection refused") {
		t.Errorf("errors = %q, want a connection refused", rep.Errors)
	}
}

func TestSlowServerTimesOut(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()

	start := time.Now()
	rep := attack(t, srv.URL+"/version", time.Second, 200*time.Millisecond)
	if elapsed := time.Since(start); elapsed > 1500*time.Millisecond {
		t.Errorf("Run took %s, want about 1.2 s: the timeout should cut slow requests off", elapsed)
	}
	f := rep.Failures
	if f.Timeout < 15 || f.Timeout > rep.Requests/2+2 {
		t.Errorf("failures = %+v of %d requests, want about half timeouts", f, rep.Requests)
	}
	if f.Connect+f.Status5xx+f.Status4xx+f.Other != 0 {
		t.Errorf("failures = %+v, want only timeouts", f)
	}
	// Open model: the slow half does not slow the sender down.
	if rep.Rate < 45 {
		t.Errorf("rate = %.1f/s, want about 50 despite the slow responses", rep.Rate)
	}
}

func TestCancelStopsEarlyWithSummary(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(rollout.VersionHeader, "1.0.0")
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	rep, err := rollout.Run(ctx, &out, rollout.Options{URL: srv.URL, Rate: 50, Duration: time.Minute})
	if err != nil {
		t.Fatalf("Run error = %v", err)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Run took %s after a 300 ms context, want it to stop", elapsed)
	}
	if rep.Requests < 10 || rep.Failures.Total() != 0 {
		t.Errorf("report: %d requests, failures %+v; want about 15 requests, none failed", rep.Requests, rep.Failures)
	}
	if !strings.Contains(out.String(), "summary:") || !strings.Contains(out.String(), "versions: 1.0.0=") {
		t.Errorf("output:\n%s\nwant a summary with the versions", &out)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []rollout.Options{
		{URL: "http://127.0.0.1:1/", Rate: 0},
		{URL: "ftp://example.com/", Rate: 1},
		{URL: "/version", Rate: 1},
	} {
		if _, err := rollout.Run(t.Context(), &bytes.Buffer{}, o); err == nil {
			t.Errorf("Run(%+v) error = nil, want an error", o)
		}
	}
}

// newCountingTLSServer starts an HTTPS server that offers HTTP/2 as well as
// HTTP/1.1, as the nginx edge does, takes delay to answer, and counts the
// connections it accepts and the HTTP/2 requests it serves. It returns a
// TLS configuration that trusts it.
func newCountingTLSServer(t *testing.T, delay time.Duration) (srv *httptest.Server, accepted, h2 *atomic.Int64, cfg *tls.Config) {
	t.Helper()
	accepted, h2 = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		}
		time.Sleep(delay)
		w.Header().Set(rollout.VersionHeader, "1.0.0")
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			accepted.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, accepted, h2, &tls.Config{RootCAs: pool}
}

// TestConnectionModes checks, against a server that offers HTTP/2 as the
// nginx edge does, that NewTransport stays on HTTP/1.1 and that
// DisableKeepAlives makes one connection per request; keep-alive far fewer.
func TestConnectionModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		disableKeepAlives bool
		summary           string
	}{
		{false, "connections: kept alive"},
		{true, "connections: new per request"},
	}
	for _, tt := range tests {
		// One after the other: TLS handshakes are slow under -race.
		t.Run(fmt.Sprintf("DisableKeepAlives=%t", tt.disableKeepAlives), func(t *testing.T) {
			// 20 ms per answer at 50/s: requests often overlap, which an
			// HTTP/2 connection would multiplex.
			srv, accepted, h2, cfg := newCountingTLSServer(t, 20*time.Millisecond)
			var out bytes.Buffer
			rep, err := rollout.Run(t.Context(), &out, rollout.Options{
				URL:               srv.URL + "/version",
				Rate:              50,
				Workers:           4,
				Duration:          time.Second,
				Timeout:           2 * time.Second,
				Transport:         rollout.NewTransport(cfg),
				DisableKeepAlives: tt.disableKeepAlives,
			})
			t.Logf("output:\n%s", &out)
			if err != nil {
				t.Fatalf("Run error = %v", err)
			}
			if rep.Requests < 40 || rep.Failures.Total() != 0 {
				t.Fatalf("report: %d requests, failures %+v; want about 50, none failed", rep.Requests, rep.Failures)
			}
			if got := h2.Load(); got != 0 {
				t.Errorf("server saw %d HTTP/2 requests of %d, want none", got, rep.Requests)
			}
			n := accepted.Load()
			if tt.disableKeepAlives && (n != int64(rep.Requests) || rep.Connections != rep.Requests) {
				t.Errorf("%d requests: server accepted %d connections, report says %d; want one per request", rep.Requests, n, rep.Connections)
			}
			if !tt.disableKeepAlives && (n > int64(rep.Requests)/4 || rep.Connections != uint64(n)) {
				t.Errorf("%d requests: server accepted %d connections, report says %d; want the same, at most a quarter", rep.Requests, n, rep.Connections)
			}
			if rep.DisableKeepAlives != tt.disableKeepAlives {
				t.Errorf("report DisableKeepAlives = %t, want %t", rep.DisableKeepAlives, tt.disableKeepAlives)
			}
			if !strings.Contains(out.String(), tt.summary) {
				t.Errorf("output does not say %q", tt.summary)
			}
		})
	}
}

// TestReloginRefusedIsAFailure checks that a login refused by a rate limit
// (429) is a failed request, counted among the logins, while the requests
// go on with the token they have; and that a login answered without a token
// is a failure too.
func TestReloginRefusedIsAFailure(t *testing.T) {
	t.Parallel()
	var logins atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		switch n := logins.Add(1); {
		case n <= 3:
			w.Write([]byte(`{"token":"good"}`))
		case n == 4:
			w.Write([]byte(`{}`))
		default:
			w.Header().Set("Retry-After", "2")
			http.Error(w, `{"error":"too many login attempts"}`, http.StatusTooManyRequests)
		}
	})
	mux.HandleFunc("GET /secure", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			http.Error(w, `{"error":"invalid token"}`, http.StatusUnauthorized)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var out bytes.Buffer
	rep, err := rollout.Run(t.Context(), &out, rollout.Options{
		URL:      srv.URL + "/secure",
		Rate:     50,
		Workers:  4,
		Duration: time.Second,
		Header:   http.Header{"Authorization": {"Bearer good"}},
		Relogin:  &rollout.Relogin{URL: srv.URL + "/login", User: "user", Password: "s3cret-pass", Every: 4},
	})
	t.Logf("output:\n%s", &out)
	if err != nil {
		t.Fatalf("Run error = %v", err)
	}
	n := uint64(logins.Load())
	if rep.Logins != n || n < 10 {
		t.Fatalf("report: %d logins, server saw %d; want the same, about 12", rep.Logins, n)
	}
	if rep.LoginFailures != n-3 || rep.Failures.Status4xx != n-4 || rep.Failures.Other != 1 || rep.Failures.Total() != n-3 {
		t.Errorf("report: %d logins, %d failed, failures %+v; want %d failed: %d 4xx (429) and 1 other (no token), /secure none",
			rep.Logins, rep.LoginFailures, rep.Failures, n-3, n-4)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("logins: %d, %d failed", n, n-3)) {
		t.Errorf("output does not count the logins and their failures")
	}
}

func TestReloginBadOptions(t *testing.T) {
	t.Parallel()
	for _, r := range []rollout.Relogin{
		{URL: "http://localhost/login", Every: 0},
		{URL: "localhost/login", Every: 2},
	} {
		_, err := rollout.Run(t.Context(), &bytes.Buffer{}, rollout.Options{URL: "http://localhost/secure", Rate: 1, Duration: time.Second, Relogin: &r})
		if err == nil {
			t.Errorf("Run with Relogin %+v: error = nil, want an error", r)
		}
	}
}

// TestRamp drives the Ramp pacer as vegeta's attacker does (wait what Pace
// says, send, repeat) on a simulated clock and counts the requests sent in
// each second: they follow the ramp, then its top rate.
func TestRamp(t *testing.T) {
	t.Parallel()
	p := rollout.Ramp{From: 10, To: 50, Over: 4 * time.Second}
	for _, tt := range []struct {
		at   time.Duration
		rate float64
	}{{0, 10}, {2 * time.Second, 30}, {4 * time.Second, 50}, {time.Minute, 50}} {
		if got := p.Rate(tt.at); got != tt.rate {
			t.Errorf("Rate(%s) = %v, want %v", tt.at, got, tt.rate)
		}
	}
	if got, want := p.Hits(4*time.Second), 120.0; got != want { // (10 + 50) / 2 x 4 s
		t.Errorf("Hits(4s) = %v, want %v", got, want)
	}
	if got, want := p.Hits(6*time.Second), 220.0; got != want { // + 50/s x 2 s
		t.Errorf("Hits(6s) = %v, want %v", got, want)
	}

	perSecond := make([]int, 6)
	var elapsed time.Duration
	for hits := uint64(0); ; hits++ {
		wait, stop := p.Pace(elapsed, hits)
		if stop {
			t.Fatalf("Pace(%s, %d) stopped the attack", elapsed, hits)
		}
		elapsed += wait
		if elapsed >= 6*time.Second {
			break
		}
		perSecond[int(elapsed/time.Second)]++
	}
	want := []int{15, 25, 35, 45, 50, 50} // the integral of Rate over each second
	for i := range want {
		if d := perSecond[i] - want[i]; d < -1 || d > 1 {
			t.Errorf("requests sent in second %d = %d, want %d (±1); all: %v", i+1, perSecond[i], want[i], perSecond)
		}
	}
}

// TestRunRamps runs a real ramp against a server: the requests of each
// second rise, and the total is what the ramp makes due.
func TestRunRamps(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(rollout.VersionHeader, "1.0.0")
	}))
	defer srv.Close()
	var out bytes.Buffer
	rep, err := rollout.Run(t.Context(), &out, rollout.Options{
		URL: srv.URL, Rate: 20, RampTo: 80, RampFor: 2 * time.Second, Duration: 3 * time.Second, Workers: 4,
	})
	t.Logf("output:\n%s", &out)
	if err != nil {
		t.Fatalf("Run error = %v", err)
	}
	if !strings.Contains(out.String(), "at 20 requests/s, ramping to 80/s over 2s") {
		t.Errorf("output does not say the ramp")
	}
	// 20/s rising to 80/s over 2 s, then 80/s for 1 s: 100 + 80.
	if rep.Requests < 160 || rep.Requests > 200 || rep.Failures.Total() != 0 {
		t.Errorf("requests = %d, failures %+v, want about 180 and none", rep.Requests, rep.Failures)
	}
	if len(rep.Seconds) < 3 || rep.Seconds[2].Requests < 2*rep.Seconds[0].Requests {
		t.Errorf("seconds = %+v, want the third at least twice the first (about 80 against 30)", rep.Seconds)
	}
}

func TestRampOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []rollout.Options{
		{URL: "http://localhost/", Rate: 10, RampTo: -1, RampFor: time.Second},
		{URL: "http://localhost/", Rate: 10, RampTo: 20},
	} {
		if _, err := rollout.Run(t.Context(), io.Discard, o); err == nil {
			t.Errorf("Run(RampTo %d, RampFor %s) error = nil, want one", o.RampTo, o.RampFor)
		}
	}
}
