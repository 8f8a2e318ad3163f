package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"example.com/app/internal/metrics"
)

func TestLint(t *testing.T) {
	m := metrics.New(metrics.Build{Service: "hello", Version: "1.0.0", Commit: "abc"}, []string{"expired"})
	m.RequestStarted()
	m.RequestFinished("/secure", "GET", 200, time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

func TestExposition(t *testing.T) {
	m := metrics.New(metrics.Build{Service: "hello", Version: "1.0.0", Commit: "abc"}, []string{"expired"})
	for _, r := range []struct {
		route, method string
		code          int
	}{{"/secure", "GET", 200}, {"/secure", "BREW", 200}, {"", "GET", 404}} {
		m.RequestStarted()
		m.RequestFinished(r.route, r.method, r.code, time.Millisecond)
	}
	m.RequestStarted() // one still in flight
	want := `
# HELP app_build_info Always 1; the labels say which build is running.
# TYPE app_build_info gauge
app_build_info{commit="abc",service="hello",version="1.0.0"} 1
# HELP http_requests_in_flight HTTP requests being served now.
# TYPE http_requests_in_flight gauge
http_requests_in_flight{service="hello"} 1
# HELP http_requests_total HTTP requests answered, by route template, method and status code.
# TYPE http_requests_total counter
http_requests_total{code="200",method="GET",route="/secure",service="hello"} 1
http_requests_total{code="200",method="OTHER",route="/secure",service="hello"} 1
http_requests_total{code="404",method="GET",route="unmatched",service="hello"} 1
# HELP token_rejections_total Requests refused for a missing or invalid token, by reason.
# TYPE token_rejections_total counter
token_rejections_total{reason="expired",service="hello"} 0
token_rejections_total{reason="missing",service="hello"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"app_build_info", "http_requests_in_flight", "http_requests_total", "token_rejections_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "login_attempts_total"); err != nil || n != 6 {
		t.Errorf("login_attempts_total has %d series (%v), want 6: one per outcome, from the start", n, err)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "go_goroutines", "process_resident_memory_bytes"); err != nil || n != 2 {
		t.Errorf("Go and process collectors: %d series (%v), want 2", n, err)
	}
}
