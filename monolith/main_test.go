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
		{Method: "GET", Path: "/", Want: http.StatusOK},
		{Method: "GET", Path: "/login", Want: http.StatusOK},
		{Method: "POST", Path: "/login", Want: http.StatusOK},
		{Method: "GET", Path: "/secure", Want: http.StatusUnauthorized},
		{Method: "GET", Path: "/.well-known/jwks.json", Want: http.StatusOK},
		{Method: "GET", Path: "/version", Want: http.StatusOK},
		{Method: "PUT", Path: "/version", Want: http.StatusMethodNotAllowed},
		{Method: "GET", Path: "/healthz", Want: http.StatusNotFound}, // ops port only
	})
	servicetest.CheckRoutes(t, s.Health, []servicetest.Route{
		{Method: "GET", Path: "/healthz", Want: http.StatusOK},
		{Method: "POST", Path: "/healthz/status", Want: http.StatusServiceUnavailable},
		{Method: "POST", Path: "/healthz/status", Want: http.StatusOK},
		{Method: "GET", Path: "/readiness", Want: http.StatusOK},
		{Method: "GET", Path: "/metrics", Want: http.StatusOK},
	})
}
