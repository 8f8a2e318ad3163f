package fault_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"example.com/app/internal/fault"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want fault.Fault
	}{
		{"", fault.Fault{}},
		{"never-ready", fault.Fault{Kind: fault.NeverReady}},
		{"crash-on-start", fault.Fault{Kind: fault.CrashOnStart}},
		{"slow-start=15s", fault.Fault{Kind: fault.SlowStart, Duration: 15 * time.Second}},
		{"latency=200ms", fault.Fault{Kind: fault.Latency, Duration: 200 * time.Millisecond}},
		{"error-rate=0.2", fault.Fault{Kind: fault.ErrorRate, Rate: 0.2}},
	}
	for _, tt := range tests {
		got, err := fault.Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("Parse(%q).String() = %q, want it back", tt.in, got.String())
		}
	}
	for _, bad := range []string{"explode", "latency", "latency=fast", "latency=-1s", "error-rate=2", "error-rate=0", "never-ready=1", "slow-start"} {
		if _, err := fault.Parse(bad); err == nil {
			t.Errorf("Parse(%q) error = nil, want an error", bad)
		}
	}
}

func TestMiddleware(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	count := func(f fault.Fault, n int) (failed int) {
		h := f.Middleware(ok)
		for range n {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if rec.Code == http.StatusInternalServerError {
				failed++
			}
		}
		return failed
	}
	if got := count(fault.Fault{}, 100); got != 0 {
		t.Errorf("no fault: %d of 100 failed, want 0", got)
	}
	if got := count(fault.Fault{Kind: fault.ErrorRate, Rate: 1}, 100); got != 100 {
		t.Errorf("error-rate=1: %d of 100 failed, want 100", got)
	}
	if got := count(fault.Fault{Kind: fault.ErrorRate, Rate: 0.5}, 2000); got < 800 || got > 1200 {
		t.Errorf("error-rate=0.5: %d of 2000 failed, want about 1000", got)
	}
	start := time.Now()
	count(fault.Fault{Kind: fault.Latency, Duration: 30 * time.Millisecond}, 2)
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("latency=30ms: 2 requests took %v, want at least 60ms", d)
	}
}
