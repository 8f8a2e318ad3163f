// Command hello greets: / for anyone, and /secure for holders of a token
// from the auth service.
//
// It serves the app API on -http (:8080) and probes and metrics on -health
// (:8081). Run it with -h for every setting.
package main

import (
	"os"

	"example.com/app/internal/service"
)

// Set at build time: go build -ldflags "-X main.version=2.0.0 -X main.commit=$(git rev-parse HEAD)".
var (
	version = "1.0.0"
	commit  = "unknown"
)

func main() { os.Exit(service.Main(hello())) }

// hello describes the hello service.
func hello() service.Service {
	return service.Service{Name: "hello", Version: version, Commit: commit, API: newAPI}
}
