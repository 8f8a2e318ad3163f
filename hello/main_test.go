package main

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"example.com/app/internal/service/servicetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoutes(t *testing.T) {
	s := servicetest.Start(t, hello(), nil)
	servicetest.CheckRoutes(t, s.HTTP, []servicetest.Route{
		{"GET", "/", http.StatusOK},
		{"HEAD", "/", http.StatusOK},
		{"GET", "/secure", http.StatusUnauthorized},
		{"GET", "/version", http.StatusOK},
		{"GET", "/login", http.StatusNotFound}, // auth's
		{"POST", "/", http.StatusMethodNotAllowed},
	})
	servicetest.CheckRoutes(t, s.Health, []servicetest.Route{
		{"GET", "/healthz", http.StatusOK},
		{"GET", "/readiness", http.StatusOK},
		{"GET", "/metrics", http.StatusOK},
		{"GET", "/", http.StatusNotFound},
	})
}
