package middleware_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"example.com/app/internal/logging"
	"example.com/app/internal/metrics"
	"example.com/app/internal/middleware"
)

func TestRequestID(t *testing.T) {
	h := middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tests := []struct {
		sent     []string
		keepSent bool
	}{
		{nil, false},
		{[]string{"abc-123"}, true},
		{[]string{"0123456789abcdef0123456789abcdef"}, true},
		{[]string{"has space"}, false},
		{[]string{strings.Repeat("x", 129)}, false},
		{[]string{"a", "b"}, false},
		{[]string{"\x01ctl"}, false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, v := range tt.sent {
			req.Header.Add("X-Request-ID", v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		got := rec.Header().Values("X-Request-ID")
		if len(got) != 1 {
			t.Fatalf("request with X-Request-ID %q: answer has %q, want one ID", tt.sent, got)
		}
		if tt.keepSent && got[0] != tt.sent[0] {
			t.Errorf("request with X-Request-ID %q: answer has %q, want it kept", tt.sent, got[0])
		}
		if !tt.keepSent && (len(got[0]) != 32 || strings.Trim(got[0], "0123456789abcdef") != "") {
			t.Errorf("request with X-Request-ID %.20q: answer has %q, want a new 32-hex-digit ID", tt.sent, got[0])
		}
	}
}

// TestObserve checks the access log line and the metrics of a routed request,
// an unrouted one and a panicking one.
func TestObserve(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	logger := zap.New(core)
	m := metrics.New(metrics.Build{Service: "test", Version: "1", Commit: "c"}, nil)
	r := mux.NewRouter()
	r.Handle("/items/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("12345")) //nolint:errcheck // test
	}))
	r.Handle("/panic", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
	middleware.LabelRoutes(r)
	h := middleware.Chain(r, middleware.RequestID, middleware.Identify("9.9.9", "pod-1"),
		middleware.Observe(logger, m, "http"), middleware.Recover(logger))

	req := httptest.NewRequest(http.MethodGet, "/items/42?q=1", nil)
	req.Header.Set("User-Agent", "test-agent")
	req.Header.Set("Authorization", "Bearer secret-token")
	req.Header.Set("X-Request-ID", "req-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get("X-App-Version") != "9.9.9" || rec.Header().Get("X-Pod-Name") != "pod-1" {
		t.Errorf("answer headers %v, want X-App-Version 9.9.9 and X-Pod-Name pod-1", rec.Header())
	}

	entries := logs.FilterMessage("request").All()
	if len(entries) != 1 {
		t.Fatalf("logged %d request lines, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	want := map[string]any{
		"server": "http", "method": "GET", "route": "/items/{id}", "path": "/items/42", "status": int64(418),
		"bytes": int64(5), "remote": "192.0.2.1:1234", "request_id": "req-1", "user_agent": "test-agent",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("log field %s = %#v, want %#v", k, f[k], v)
		}
	}
	if _, ok := f["duration"]; !ok {
		t.Error("log line has no duration")
	}
	line, _ := json.Marshal(f)
	if strings.Contains(string(line), "secret-token") {
		t.Errorf("log line %s contains the Authorization header's token", line)
	}
	if got := testutil.ToFloat64(m.RequestCounter("/items/{id}", "GET", "418")); got != 1 {
		t.Errorf("http_requests_total{route=/items/{id},code=418} = %v, want 1", got)
	}

	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/random/path/1234", nil))
	if got := testutil.ToFloat64(m.RequestCounter(metrics.Unmatched, "GET", "404")); got != 1 {
		t.Errorf("http_requests_total{route=unmatched,code=404} = %v, want 1: raw paths must not become labels", got)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/panic", nil))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "boom") || strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("panicking handler answered %d %q, want 500 without the panic or a stack", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("panicking handler answered Content-Type %q, want application/json", ct)
	}
	if p := logs.FilterMessage("handler panicked").All(); len(p) != 1 || p[0].ContextMap()["panic"] != "boom" {
		t.Errorf("panic log = %v, want one line naming the panic", p)
	}
	if got := testutil.ToFloat64(m.RequestCounter("/panic", "GET", "500")); got != 1 {
		t.Errorf("http_requests_total{route=/panic,code=500} = %v, want 1", got)
	}
}

func TestLimitBody(t *testing.T) {
	var read int
	h := middleware.LimitBody(10)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 100)
		n, err := r.Body.Read(buf)
		read = n
		if err != nil && err.Error() == "http: request body too large" {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 11))))
	var body struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != http.StatusRequestEntityTooLarge || err != nil || body.Error == "" {
		t.Errorf("11-byte body with a 10-byte limit = %d %s, want 413 with a JSON error", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789")))
	if rec.Code != http.StatusOK || read != 10 {
		t.Errorf("10-byte body with a 10-byte limit = %d (read %d), want 200 and all of it read", rec.Code, read)
	}
	// Unknown length (chunked): cut at the limit while reading.
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 50)))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("50-byte chunked body with a 10-byte limit = %d, want 413", rec.Code)
	}
}

// TestAccessLineJSON: the access line as the services write it (zap's JSON
// encoder, as logging.New builds it) has exactly these fields, of these
// types: alerts and dashboards read them.
func TestAccessLineJSON(t *testing.T) {
	var buf bytes.Buffer
	logger, flush, err := logging.New(&buf, logging.Options{Level: "info", Format: "json"}, false)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(metrics.Build{Service: "test", Version: "1", Commit: "c"}, nil)
	r := mux.NewRouter()
	r.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hi")) })) //nolint:errcheck // test
	middleware.LabelRoutes(r)
	h := middleware.Chain(r, middleware.RequestID, middleware.Observe(logger, m, "http"))
	req := httptest.NewRequest(http.MethodGet, "/?q=1", nil)
	req.Header.Set("User-Agent", "agent \"quoted\"\n")
	h.ServeHTTP(httptest.NewRecorder(), req)
	flush()

	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("access line %q: %v", buf.String(), err)
	}
	want := map[string]string{ // field: its JSON type
		"level": "string", "time": "string", "msg": "string", "server": "string",
		"method": "string", "route": "string", "path": "string", "status": "float64", "bytes": "float64",
		"duration": "float64", "remote": "string", "request_id": "string", "user_agent": "string",
	}
	for k, v := range line {
		if typ, ok := want[k]; !ok || fmt.Sprintf("%T", v) != typ {
			t.Errorf("access line field %s = %#v, want one of %v with its type", k, v, want)
		}
	}
	for k := range want {
		if _, ok := line[k]; !ok {
			t.Errorf("access line %s lacks %s", buf.String(), k)
		}
	}
	if line["msg"] != "request" || line["route"] != "/" || line["path"] != "/" || line["status"] != 200.0 ||
		line["bytes"] != 2.0 || line["user_agent"] != "agent \"quoted\"\n" || len(line["request_id"].(string)) != 32 {
		t.Errorf("access line = %v, want msg request, route and path /, status 200, 2 bytes, the agent, a made-up ID", line)
	}
}
