// Package fault turns a service into a deliberately bad release, for the
// course's rollout lessons: a rollout that stalls, a crash loop, a release
// that errors or is slow. It is off unless FAULT is set.
//
//	FAULT=never-ready      readiness never passes: the rollout stalls
//	FAULT=crash-on-start   the process exits 1 at once: CrashLoopBackOff
//	FAULT=slow-start=15s   readiness passes only after 15s
//	FAULT=error-rate=0.2   20% of app requests answer 500
//	FAULT=latency=200ms    every app request is delayed by 200ms
package fault

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind names a fault.
type Kind string

// The faults.
const (
	None         Kind = ""
	NeverReady   Kind = "never-ready"
	CrashOnStart Kind = "crash-on-start"
	SlowStart    Kind = "slow-start"
	ErrorRate    Kind = "error-rate"
	Latency      Kind = "latency"
)

// Fault is a parsed FAULT setting. The zero value is no fault.
type Fault struct {
	Kind     Kind
	Duration time.Duration // for SlowStart and Latency
	Rate     float64       // for ErrorRate: the share of requests that fail, 0 to 1
}

// Parse reads a FAULT setting such as "latency=200ms". An empty string is no fault.
func Parse(s string) (Fault, error) {
	name, arg, hasArg := strings.Cut(strings.TrimSpace(s), "=")
	f := Fault{Kind: Kind(name)}
	switch f.Kind {
	case None, NeverReady, CrashOnStart:
		if hasArg {
			return Fault{}, fmt.Errorf("%q takes no value", name)
		}
	case SlowStart, Latency:
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return Fault{}, fmt.Errorf("%q needs a positive duration, as in %s=200ms", name, name)
		}
		f.Duration = d
	case ErrorRate:
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r <= 0 || r > 1 {
			return Fault{}, fmt.Errorf("%q needs a share between 0 and 1, as in error-rate=0.2", name)
		}
		f.Rate = r
	default:
		return Fault{}, fmt.Errorf("unknown fault %q: want never-ready, crash-on-start, slow-start=DURATION, error-rate=SHARE or latency=DURATION", s)
	}
	return f, nil
}

// String returns the setting as FAULT spells it.
func (f Fault) String() string {
	switch f.Kind {
	case SlowStart, Latency:
		return string(f.Kind) + "=" + f.Duration.String()
	case ErrorRate:
		return string(f.Kind) + "=" + strconv.FormatFloat(f.Rate, 'g', -1, 64)
	}
	return string(f.Kind)
}

// Middleware applies ErrorRate and Latency to the requests next serves;
// for other faults it returns next unchanged.
func (f Fault) Middleware(next http.Handler) http.Handler {
	switch f.Kind {
	case Latency:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(f.Duration):
			case <-r.Context().Done():
				return
			}
			next.ServeHTTP(w, r)
		})
	case ErrorRate:
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rand.Float64() < f.Rate {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte(`{"error":"injected fault (FAULT=` + f.String() + `)"}` + "\n")) //nolint:errcheck // the client went away
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	return next
}
