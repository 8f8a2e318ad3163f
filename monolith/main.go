// Command monolith is the whole app in one process: the auth service's
// /login and the hello service's /, /secure and /version, built from the
// same handlers. It is where the course starts, before the split.
//
// With -dev (what `make run` uses) it needs no configuration: it makes up a
// signing key and shuts down without a drain. Run it with -h for every setting.
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

func main() { os.Exit(service.Main(monolith())) }

// monolith describes the monolith.
func monolith() service.Service {
	return service.Service{Name: "monolith", Version: version, Commit: commit, Needs: config.Login | config.DevMode, API: newAPI}
}
