// Package metrics defines the services' Prometheus metrics.
//
// Every service makes its own registry (global registration panics the
// second time a test starts a service in one process). HTTP metrics are
// labelled by the mux route template, never the raw path, so that a scan of
// random URLs cannot create unbounded series.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of a login attempt, the values of login_attempts_total's outcome label.
const (
	LoginSuccess            = "success"
	LoginMissingCredentials = "missing_credentials"
	LoginBadCredentials     = "bad_credentials"
	LoginPasswordTooLong    = "password_too_long"
	LoginRateLimited        = "rate_limited"
	LoginBusy               = "busy"
)

// RejectMissing is token_rejections_total's reason when no token was sent.
const RejectMissing = "missing"

// Unmatched is the route label of requests that matched no route (404, 405).
const Unmatched = "unmatched"

// Metrics are one service's metrics.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	durations  *prometheus.HistogramVec
	inFlight   prometheus.Gauge
	logins     *prometheus.CounterVec
	rejections *prometheus.CounterVec

	mu     sync.RWMutex
	series map[seriesKey]*series // label look-ups cached off the hot path
}

type seriesKey struct {
	route, method string
	code          int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// Build identifies the running binary.
type Build struct {
	Service, Version, Commit string
}

// New returns the metrics of the service b describes, registered in a new
// registry with the Go and process collectors. tokenReasons lists the values
// of token_rejections_total's reason label, so each starts at 0.
func New(b Build, tokenReasons []string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r := prometheus.WrapRegistererWith(prometheus.Labels{"service": b.Service}, reg)

	m := &Metrics{
		reg:    reg,
		series: make(map[seriesKey]*series),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time from receiving an HTTP request to finishing its answer, by route template and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "login_attempts_total",
			Help: "Login attempts, by outcome.",
		}, []string{"outcome"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "token_rejections_total",
			Help: "Requests refused for a missing or invalid token, by reason.",
		}, []string{"reason"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "app_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "commit"})
	info.WithLabelValues(b.Version, b.Commit).Set(1)
	r.MustRegister(m.requests, m.durations, m.inFlight, m.logins, m.rejections, info)

	for _, o := range []string{LoginSuccess, LoginMissingCredentials, LoginBadCredentials, LoginPasswordTooLong, LoginRateLimited, LoginBusy} {
		m.logins.WithLabelValues(o)
	}
	m.rejections.WithLabelValues(RejectMissing)
	for _, reason := range tokenReasons {
		m.rejections.WithLabelValues(reason)
	}
	return m
}

// Registry returns the registry holding the metrics, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RequestStarted counts a request as in flight until RequestFinished.
func (m *Metrics) RequestStarted() { m.inFlight.Inc() }

// RequestFinished counts a finished request. An empty route means the
// request matched no route.
func (m *Metrics) RequestFinished(route, method string, code int, d time.Duration) {
	m.inFlight.Dec()
	if route == "" {
		route = Unmatched
	}
	s := m.seriesFor(seriesKey{route, normalizeMethod(method), code})
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

// seriesFor returns the counter and histogram of k's labels, looked up in a
// plain map: WithLabelValues would hash and format the labels every time.
func (m *Metrics) seriesFor(k seriesKey) *series {
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series[k]; ok {
		return s
	}
	s = &series{
		requests: m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.code)),
		duration: m.durations.WithLabelValues(k.route, k.method),
	}
	m.series[k] = s
	return s
}

// Login counts a login attempt with one of the Login* outcomes.
func (m *Metrics) Login(outcome string) { m.logins.WithLabelValues(outcome).Inc() }

// TokenRejected counts a request refused for a missing or invalid token.
func (m *Metrics) TokenRejected(reason string) { m.rejections.WithLabelValues(reason).Inc() }

// normalizeMethod keeps the method label's values few: a client can send any
// word as a method.
func normalizeMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// LoginCounter returns login_attempts_total's counter for outcome, for tests.
func (m *Metrics) LoginCounter(outcome string) prometheus.Counter {
	return m.logins.WithLabelValues(outcome)
}

// RejectionCounter returns token_rejections_total's counter for reason, for tests.
func (m *Metrics) RejectionCounter(reason string) prometheus.Counter {
	return m.rejections.WithLabelValues(reason)
}

// RequestCounter returns http_requests_total's counter for a route, method and code, for tests.
func (m *Metrics) RequestCounter(route, method, code string) prometheus.Counter {
	return m.requests.WithLabelValues(route, method, code)
}
