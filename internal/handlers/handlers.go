// Package handlers holds the app's HTTP handlers. The auth, hello and
// monolith binaries compose the same constructors: the monolith is these
// handlers in one process, and the services are the same handlers split.
package handlers

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"example.com/app/internal/respond"
)

// hello is the greeting's body, encoded once.
var hello = []byte(`{"message":"Hello"}` + "\n")

// Hello greets: {"message": "Hello"}. Behind RequireToken it also names the
// token's user: {"message": "Hello", "user": "<sub>"}.
func Hello() http.Handler {
	type response struct {
		Message string `json:"message"`
		User    string `json:"user"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := ClaimsFrom(r.Context())
		if !ok {
			respond.Raw(w, http.StatusOK, hello)
			return
		}
		respond.JSON(w, http.StatusOK, response{Message: "Hello", User: claims.Subject})
	})
}

// Build identifies the running binary.
type Build struct {
	Service string `json:"service"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// Version answers with b: {"service": "...", "version": "...", "commit": "..."}.
func Version(b Build) http.Handler {
	body, err := json.Marshal(b)
	if err != nil {
		panic(err) // three strings always encode
	}
	body = append(body, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		respond.Raw(w, http.StatusOK, body)
	})
}

// NotFound answers 404 {"error": "not found"}.
func NotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		respond.Error(w, http.StatusNotFound, "not found")
	})
}

// MethodNotAllowed answers 405 with an Allow header listing the methods
// router serves at the request's path.
func MethodNotAllowed(router *mux.Router) http.Handler {
	candidates := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allowed []string
		for _, m := range candidates {
			probe := r.Clone(r.Context())
			probe.Method = m
			var match mux.RouteMatch
			if router.Match(probe, &match) && match.MatchErr == nil {
				allowed = append(allowed, m)
			}
		}
		slices.Sort(allowed)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		respond.Error(w, http.StatusMethodNotAllowed, "method not allowed")
	})
}
