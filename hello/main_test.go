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
		{Method: "GET", Path: "/", Want: http.StatusOK},
		{Method: "HEAD", Path: "/", Want: http.StatusOK},
		{Method: "GET", Path: "/secure", Want: http.StatusUnauthorized},
		{Method: "GET", Path: "/version", Want: http.StatusOK},
		{Method: "GET", Path: "/login", Want: http.StatusNotFound},                 // auth's
		{Method: "GET", Path: "/.well-known/jwks.json", Want: http.StatusNotFound}, // auth's
		{Method: "POST", Path: "/", Want: http.StatusMethodNotAllowed},
	})
	servicetest.CheckRoutes(t, s.Health, []servicetest.Route{
		{Method: "GET", Path: "/healthz", Want: http.StatusOK},
		{Method: "GET", Path: "/readiness", Want: http.StatusOK},
		{Method: "GET", Path: "/metrics", Want: http.StatusOK},
		{Method: "GET", Path: "/", Want: http.StatusNotFound},
	})
}
