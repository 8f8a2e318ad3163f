// Package health holds a service's liveness and readiness state and serves
// the probe endpoints Kubernetes calls.
//
// The course's probe lessons flip the state by hand:
//
//	curl -X POST localhost:8081/readiness/status   # now 503: the pod leaves the Service
//	curl -X POST localhost:8081/healthz/status     # now 503: the kubelet restarts it
package health

import (
	"net/http"
	"sync/atomic"
)

// The ops port's paths. Kubernetes manifests and tests use these constants.
const (
	LivenessPath        = "/healthz"
	ReadinessPath       = "/readiness"
	LivenessTogglePath  = LivenessPath + "/status"
	ReadinessTogglePath = ReadinessPath + "/status"
	MetricsPath         = "/metrics"
)

// Probe is a service's health state. The zero value is alive but not ready.
type Probe struct {
	sick     atomic.Bool // the liveness toggle was flipped
	ready    atomic.Bool // the service has started and its readiness toggle is on
	draining atomic.Bool // shutting down: never ready again
}

// New returns a Probe that is alive and not yet ready.
func New() *Probe { return new(Probe) }

// SetReady sets whether the service is ready to take traffic.
func (p *Probe) SetReady(ready bool) { p.ready.Store(ready) }

// Drain marks the service as shutting down: from now on it is not ready,
// whatever the readiness toggle says.
func (p *Probe) Drain() { p.draining.Store(true) }

// Alive reports whether the liveness probe passes.
func (p *Probe) Alive() bool { return !p.sick.Load() }

// Ready reports whether the readiness probe passes.
func (p *Probe) Ready() bool { return p.ready.Load() && !p.draining.Load() }

// Liveness answers 200 "ok" while alive, else 503.
func (p *Probe) Liveness() http.Handler { return state(p.Alive) }

// Readiness answers 200 "ok" while ready, else 503.
func (p *Probe) Readiness() http.Handler { return state(p.Ready) }

// ToggleLiveness flips liveness and answers with the new state.
func (p *Probe) ToggleLiveness() http.Handler {
	return toggle(func() { flip(&p.sick) }, p.Alive)
}

// ToggleReadiness flips the readiness toggle and answers with the new state.
func (p *Probe) ToggleReadiness() http.Handler {
	return toggle(func() { flip(&p.ready) }, p.Ready)
}

func flip(b *atomic.Bool) {
	for v := b.Load(); !b.CompareAndSwap(v, !v); v = b.Load() {
	}
}

func toggle(flipIt func(), state func() bool) http.Handler {
	answer := stateHandler(state)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flipIt()
		answer(w, r)
	})
}

func state(ok func() bool) http.Handler { return http.HandlerFunc(stateHandler(ok)) }

func stateHandler(ok func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("unavailable\n")) //nolint:errcheck // the client went away; nothing to do
			return
		}
		w.Write([]byte("ok\n")) //nolint:errcheck // as above
	}
}
