package main

import (
	"net/http"

	"github.com/gorilla/mux"

	"example.com/app/internal/handlers"
	"example.com/app/internal/service"
)

// newAPI returns the auth service's API. Every route is listed here.
func newAPI(d service.Deps) *mux.Router {
	r := mux.NewRouter()
	r.Handle("/login", handlers.Login(d.Logger, d.Users, d.Issuer, d.LoginLimits, d.Metrics)).Methods(http.MethodGet, http.MethodPost)
	r.Handle("/.well-known/jwks.json", handlers.JWKS(d.Verifier)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/version", handlers.Version(d.Build)).Methods(http.MethodGet, http.MethodHead)
	return r
}
