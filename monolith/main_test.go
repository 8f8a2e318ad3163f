package main

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"example.com/app/internal/service/servicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRoutes: the monolith serves the union of auth's and hello's routes.
func TestRoutes(t *testing.T) {
	s := servicetest.Start(t, monolith(), map[string]string{"JWT_SECRET": ""}, "-dev")
	servicetest.CheckRoutes(t, s.HTTP, []servicetest.Route{
		{"GET", "/", http.StatusOK},
		{"GET", "/login", http.StatusOK},
		{"POST", "/login", http.StatusOK},
		{"GET", "/secure", http.StatusUnauthorized},
		{"GET", "/version", http.StatusOK},
		{"PUT", "/version", http.StatusMethodNotAllowed},
		{"GET", "/healthz", http.StatusNotFound}, // ops port only
	})
	servicetest.CheckRoutes(t, s.Health, []servicetest.Route{
		{"GET", "/healthz", http.StatusOK},
		{"POST", "/healthz/status", http.StatusServiceUnavailable},
		{"POST", "/healthz/status", http.StatusOK},
		{"GET", "/readiness", http.StatusOK},
		{"GET", "/metrics", http.StatusOK},
	})
}
