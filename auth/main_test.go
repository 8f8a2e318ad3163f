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
		{Method: "GET", Path: "/login", Want: http.StatusOK},
		{Method: "POST", Path: "/login", Want: http.StatusOK},
		{Method: "DELETE", Path: "/login", Want: http.StatusMethodNotAllowed},
		{Method: "GET", Path: "/.well-known/jwks.json", Want: http.StatusOK},
		{Method: "GET", Path: "/version", Want: http.StatusOK},
		{Method: "GET", Path: "/", Want: http.StatusNotFound},       // hello's
		{Method: "GET", Path: "/secure", Want: http.StatusNotFound}, // hello's
	})
	servicetest.CheckRoutes(t, s.Health, []servicetest.Route{
		{Method: "GET", Path: "/healthz", Want: http.StatusOK},
		{Method: "GET", Path: "/readiness", Want: http.StatusOK},
		{Method: "GET", Path: "/metrics", Want: http.StatusOK},
	})
}
