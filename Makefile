# The app's build, run and test commands. `make help` lists them.

# The Go toolchain with the current standard-library security fixes. go.mod
# requires it, so an older go refuses to build instead of building a
# vulnerable binary; this line lets the go command fetch it.
export GOTOOLCHAIN ?= go1.26.11

VERSION  ?= 1.0.0
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BINARIES := auth hello monolith
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# govulncheck runs offline against the Go vulnerability database, which the
# module proxy serves as the module golang.org/x/vulndb.
GOVULNCHECK_VERSION := v1.9.0
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018

.DEFAULT_GOAL := help
.PHONY: help build run test bench lint vulncheck clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build static binaries into bin/ (VERSION=2.0.0 for the rollout's second version)
	@mkdir -p bin
	for b in $(BINARIES); do \
		CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/$$b ./$$b || exit; \
	done

run: build ## run the monolith in dev mode on :8080 (API) and :8081 (probes, metrics)
	bin/monolith -dev -http :8080 -health :8081

test: ## run every test, with the race detector
	go test -race -count=1 ./...

bench: ## run the benchmarks and print their figures
	go test -run '^$$' -bench . -benchmem ./...

lint: vulncheck ## check formatting, go vet, go.mod tidiness and known vulnerabilities
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	go vet ./...
	go mod tidy -diff

vulncheck: ## report known vulnerabilities in the code's call graph (offline database)
	@db=$$(go mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$db" || { echo "could not download golang.org/x/vulndb@$(VULNDB_VERSION)"; exit 1; }; \
	go run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -db "file://$$db/data/osv" ./...

clean: ## remove build output
	rm -rf bin
