package health_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"example.com/app/internal/health"
)

func status(t *testing.T, h http.Handler, method string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/", nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

func TestProbe(t *testing.T) {
	p := health.New()
	if code, _ := status(t, p.Readiness(), http.MethodGet); code != http.StatusServiceUnavailable {
		t.Errorf("readiness before SetReady = %d, want 503", code)
	}
	if code, body := status(t, p.Liveness(), http.MethodGet); code != http.StatusOK || body != "ok" {
		t.Errorf("liveness of a new probe = %d %q, want 200 ok", code, body)
	}
	p.SetReady(true)
	if code, body := status(t, p.Readiness(), http.MethodGet); code != http.StatusOK || body != "ok" {
		t.Errorf("readiness after SetReady = %d %q, want 200 ok", code, body)
	}

	// The course's toggles: each call flips, and answers with the new state.
	steps := []struct {
		toggle    http.Handler
		method    string
		want      int
		readiness int
		liveness  int
	}{
		{p.ToggleReadiness(), http.MethodPost, 503, 503, 200},
		{p.ToggleReadiness(), http.MethodGet, 200, 200, 200},
		{p.ToggleLiveness(), http.MethodPost, 503, 200, 503},
		{p.ToggleLiveness(), http.MethodGet, 200, 200, 200},
	}
	for i, s := range steps {
		if code, _ := status(t, s.toggle, s.method); code != s.want {
			t.Errorf("step %d: toggle = %d, want %d", i, code, s.want)
		}
		if code, _ := status(t, p.Readiness(), http.MethodGet); code != s.readiness {
			t.Errorf("step %d: readiness = %d, want %d", i, code, s.readiness)
		}
		if code, _ := status(t, p.Liveness(), http.MethodGet); code != s.liveness {
			t.Errorf("step %d: liveness = %d, want %d", i, code, s.liveness)
		}
	}

	p.Drain()
	if code, _ := status(t, p.Readiness(), http.MethodGet); code != http.StatusServiceUnavailable {
		t.Errorf("readiness while draining = %d, want 503", code)
	}
	if code, _ := status(t, p.ToggleReadiness(), http.MethodPost); code != http.StatusServiceUnavailable {
		t.Errorf("readiness toggle while draining = %d, want 503: a draining service never comes back", code)
	}
	if code, _ := status(t, p.Liveness(), http.MethodGet); code != http.StatusOK {
		t.Errorf("liveness while draining = %d, want 200: draining is not dying", code)
	}
}
