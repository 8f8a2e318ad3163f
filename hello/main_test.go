package main

import (
	"errors"
	"io"
	"net/http"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"example.com/app/internal/config"
	"example.com/app/internal/service"
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

// TestCannotMint: hello holds public keys only: it has no Issuer, and a
// private key offered to it is refused at start.
func TestCannotMint(t *testing.T) {
	private, public, _ := servicetest.KeyFiles(t)
	cfg, err := config.Parse([]string{"hello"}, func(k string) string {
		return map[string]string{"JWT_PUBLIC_KEYS_FILE": public}[k]
	}, io.Discard, hello().Needs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Keys.Signing != nil {
		t.Errorf("hello's configuration has a signing key %s, want none", cfg.Keys.Signing.ID)
	}
	app, err := service.New(hello(), cfg, zap.NewNop(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if app.Deps.Issuer != nil {
		t.Error("hello has an Issuer, want none: it must not be able to mint tokens")
	}
	_, err = config.Parse([]string{"hello"}, func(k string) string {
		return map[string]string{"JWT_PUBLIC_KEYS_FILE": public, "JWT_PRIVATE_KEY_FILE": private}[k]
	}, io.Discard, hello().Needs)
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("hello with JWT_PRIVATE_KEY_FILE: error = %v, want a configuration error", err)
	}
}
