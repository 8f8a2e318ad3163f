package main

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"example.com/app/internal/service/servicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoutes(t *testing.T) {
	s := servicetest.Start(t, auth(), nil)
	servicetest.CheckRoutes(t, s.HTTP, []servicetest.Route{
		{"GET", "/login", http.StatusOK},
		{"POST", "/login", http.StatusOK},
		{"DELETE", "/login", http.StatusMethodNotAllowed},
		{"GET", "/version", http.StatusOK},
		{"GET", "/", http.StatusNotFound},       // hello's
		{"GET", "/secure", http.StatusNotFound}, // hello's
	})
	servicetest.CheckRoutes(t, s.Health, []servicetest.Route{
		{"GET", "/healthz", http.StatusOK},
		{"GET", "/readiness", http.StatusOK},
		{"GET", "/metrics", http.StatusOK},
	})
}
