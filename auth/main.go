// Command auth logs users in: GET or POST /login with HTTP basic auth
// answers with a signed token that the hello service accepts.
//
// It serves the app API on -http (:8080) and probes and metrics on -health
// (:8081). Run it with -h for every setting.
package main

import (
	"os"

	"example.com/app/internal/config"
	"example.com/app/internal/service"
)

// Set at build time: go build -ldflags "-X main.version=2.0.0 -X main.commit=$(git rev-parse HEAD)".
var (
	version = "1.0.0"
	commit  = "unknown"
)

func main() { os.Exit(service.Main(auth())) }

// auth describes the auth service.
func auth() service.Service {
	return service.Service{Name: "auth", Version: version, Commit: commit, Needs: config.Login, API: newAPI}
}
