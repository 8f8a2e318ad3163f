package main

import (
	"net/http"

	"github.com/gorilla/mux"

	"example.com/app/internal/handlers"
	"example.com/app/internal/service"
)

// newAPI returns the hello service's API. Every route is listed here.
func newAPI(d service.Deps) *mux.Router {
	r := mux.NewRouter()
	r.Handle("/", handlers.Hello()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/secure", handlers.RequireToken(d.Verifier, d.Metrics, handlers.Hello())).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/version", handlers.Version(d.Build)).Methods(http.MethodGet, http.MethodHead)
	return r
}
