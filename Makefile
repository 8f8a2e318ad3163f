# The app's build, run and test commands. `make help` lists them.

# The Go toolchain with the current standard-library security fixes. go.mod
# requires it, so an older go refuses to build instead of building a
# vulnerable binary; this line lets the go command fetch it.
export GOTOOLCHAIN ?= go1.26.11

VERSION  ?= 1.0.0
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BINARIES := auth hello monolith
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Images: $(REGISTRY)/<binary>:$(VERSION), for every platform in PLATFORMS.
# The Kubernetes manifests name ghcr.io/example/app, a placeholder, until
# `make set-registry REGISTRY=...` writes yours into them.
# CONTAINER_ENGINE is docker if a docker command is installed, else podman
# (which only-podman machines would otherwise have to name every time).
CONTAINER_ENGINE ?= $(if $(shell command -v docker 2>/dev/null),docker,podman)
REGISTRY         ?= ghcr.io/example/app
PLATFORMS        ?= linux/amd64,linux/arm64
REVISION         ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE           ?= https://example.com/app
IMAGE_ARGS        = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg SOURCE=$(SOURCE)
# docker's `make push` builds every platform at once, which the `docker`
# driver of Docker's classic image store refuses ("Multi-platform build is not
# supported for the docker driver"): it builds with a docker-container builder
# of this name, made on first use (network=host lets it push to a registry on
# localhost). DOCKER_BUILDER= uses the current builder instead (Docker Desktop,
# or Engine with the containerd image store, can build several platforms).
DOCKER_BUILDER   ?= app-multiplatform
comma := ,
platform_list     = $(subst $(comma), ,$(PLATFORMS))
# docker's `make images` loads one platform: this machine's if PLATFORMS has
# it, else the first. The classic image store cannot hold a multi-platform
# image (and a docker-container builder cannot --load one), and an image for
# another architecture would not run here anyway; loading one tag per platform
# would build every platform for nothing. `make push` builds them all.
load_platform     = $(or $(filter linux/$(shell go env GOARCH),$(platform_list)),$(firstword $(platform_list)))
ifneq ($(filter images push,$(MAKECMDGOALS)),)
ifeq ($(filter docker podman,$(CONTAINER_ENGINE)),)
$(error CONTAINER_ENGINE=$(CONTAINER_ENGINE): want docker or podman)
endif
endif

# Kubernetes: the current kubectl context; NAMESPACE empty means its namespace.
# OVERLAY is the provider: kubernetes/overlays/{gke,eks,local}.
NAMESPACE          ?=
OVERLAY            ?=
KUBE_SCORE_VERSION := v1.20.0

# govulncheck runs offline against the Go vulnerability database, which the
# module proxy serves as the module golang.org/x/vulndb.
GOVULNCHECK_VERSION := v1.9.0
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018

.DEFAULT_GOAL := help
.PHONY: help build run test bench bench-http lint vulncheck clean build-linux images push test-containers certs keys rotate-keys rotate users-file up edge-e2e set-registry secrets deploy undeploy test-k8s test-monitoring kube-score test-ui cluster-up cluster-down test-cluster

help: ## list the targets, and the settings they will use
	@echo 'Usage: make TARGET [SETTING=value ...]'
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo 'Settings, as this make would use them:'
	@printf '  %-17s %s\n' \
		VERSION '$(VERSION)' \
		REGISTRY '$(REGISTRY)' \
		PLATFORMS '$(PLATFORMS)' \
		CONTAINER_ENGINE '$(CONTAINER_ENGINE)' \
		DOCKER_BUILDER '$(DOCKER_BUILDER)' \
		OVERLAY '$(or $(OVERLAY),(empty: make deploy asks for gke, eks or local))' \
		NAMESPACE '$(or $(NAMESPACE),(empty: the kubectl context namespace))' \
		GOTOOLCHAIN '$(GOTOOLCHAIN)'

build: ## build static binaries into bin/ (VERSION=2.0.0 for the rollout's second version)
	@mkdir -p bin
	for b in $(BINARIES); do \
		CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/$$b ./$$b || exit; \
	done

run: build ## run the monolith in dev mode on :8080 (API) and :8081 (probes, metrics)
	bin/monolith -dev -http :8080 -health :8081

test: ## run every test, with the race detector (the edge tests need nginx, the UI's chromium: apt-get install nginx chromium)
	go test -race -count=1 ./...
	$(MAKE) test-k8s
	$(MAKE) test-monitoring
	$(MAKE) test-ui

test-ui: ## test the UI (frontend/) in headless Chromium through nginx (its own module)
	cd frontend/browsertest && go vet ./... && go mod tidy -diff && go test -race -count=1 ./...

test-k8s: ## check the Kubernetes manifests offline, against the API types and the code (their own module)
	cd kubernetes/check && go vet ./... && go mod tidy -diff && go test -race -count=1 ./...

# Its own module too: Prometheus' dependency tree stays out of go.mod. The
# first run builds promtool (a few minutes cold; Go's build cache keeps it).
test-monitoring: ## check the alert rules and dashboard in monitoring/ with promtool and against the binaries' /metrics (their own module)
	cd monitoring/check && go vet ./... && go mod tidy -diff && go test -race -count=1 ./...

kube-score: ## install kube-score, which test-k8s runs on the manifests
	go install github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)

edge-e2e: ## the end-to-end tests through real nginx, printing the measured figures
	go test -count=1 -v ./internal/edge/e2e

# A current nginx next to Debian 12's 1.22: the configs must run warning-free
# on both (nginx 1.25.1 changed how HTTP/2 is switched on). build.sh builds
# Debian 13's upstream nginx once and caches it outside the repository.
NGINX_MODERN = $(shell test/cluster/build.sh nginx-bin)
.PHONY: nginx-modern test-nginx-modern
nginx-modern: ## build nginx 1.26.3 from Debian 13's source into /var/cache/app-nginx (root the first time: apt; about 2 min, then cached)
	test/cluster/build.sh nginx

test-nginx-modern: nginx-modern ## run the edge, make up and UI tests again with that nginx (NGINX_BIN picks the nginx any test runs)
	NGINX_BIN=$(NGINX_MODERN) go test -race -count=1 ./internal/edge/... ./cmd/up
	NGINX_BIN=$(NGINX_MODERN) $(MAKE) test-ui

# HOSTS= given but empty is an error: `HOSTS=$$EXTERNAL_IP` with the
# variable unset would otherwise make a certificate for localhost only.
certs: ## write a CA and a localhost certificate into tls/ (FORCE=1 replaces them, HOSTS=a,b adds names)
	@if [ "$(origin HOSTS)" != undefined ] && [ -z "$(strip $(HOSTS))" ]; then \
		echo "make certs: HOSTS is empty (is EXTERNAL_IP set?): give the names or addresses the certificate is for"; exit 1; \
	fi
	go run ./cmd/certgen -out tls $(if $(FORCE),-force) $(if $(HOSTS),-hosts $(HOSTS))

# Token keys: Ed25519, auth signs with keys/jwt-private.pem, every service
# accepts keys/jwt-public.pem. `make secrets` uploads them once; `make rotate`
# rotates them on the cluster.
KEYS_DIR ?= keys

keys: ## write the token signing key pair into keys/ (KEYS_DIR; FORCE=1 replaces it, logging everyone out)
	go run ./cmd/keys gen -dir $(KEYS_DIR) $(if $(FORCE),-force)

rotate-keys: ## one step of a key rotation in keys/ only: STEP=add, then promote, then retire (make rotate does it on the cluster)
	@case "$(STEP)" in add|promote|retire) ;; *) echo "usage: make rotate-keys STEP=add|promote|retire (in this order; make rotate STEP=... also uploads and waits)"; exit 2;; esac
	go run ./cmd/keys $(STEP) -dir $(KEYS_DIR)
	go run ./cmd/keys list -dir $(KEYS_DIR)

users-file: ## write keys/users with one user (NAME, default user) and a random password, printed once
	go run ./cmd/keys users -out $(KEYS_DIR)/users $(if $(NAME),-name $(NAME)) $(if $(FORCE),-force)

# Built and run, not `go run`: go run exits 1 when Ctrl-C stops its child.
up: ## run auth and hello behind nginx on https://localhost:8443 (EDGE_PORT); Ctrl-C stops all
	@mkdir -p bin
	go build -o bin/up ./cmd/up
	bin/up

bench: ## run the benchmarks and print their figures (bench-http runs the HTTP one)
	go test -run '^$$' -bench . -skip '^BenchmarkHTTP$$' -benchmem ./...

# COMPARE=dir adds hello built from another checkout (e.g. main) to every table.
bench-http: ## hello against independent baselines with wrk, directly and through the TLS edge: req/s, p99, RSS, start
	BENCH_HTTP_COMPARE=$(COMPARE) go test -run '^$$' -bench '^BenchmarkHTTP$$' -benchtime=1x -timeout 15m ./internal/e2e

lint: vulncheck ## check formatting, go vet, go.mod tidiness and known vulnerabilities
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }
	go vet ./...
	go mod tidy -diff

vulncheck: ## report known vulnerabilities in the code's call graph (offline database)
	@test -f "$$(go env GOMODCACHE)/cache/download/golang.org/x/vulndb/@v/$(VULNDB_VERSION).zip" || \
		echo "vulncheck: downloading the Go vulnerability database golang.org/x/vulndb@$(VULNDB_VERSION) (about 25 MB, 67 MB unpacked; once, then from the module cache)"
	@db=$$(go mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$db" || { echo "could not download golang.org/x/vulndb@$(VULNDB_VERSION)"; exit 1; }; \
	go run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -db "file://$$db/data/osv" ./...

build-linux: ## cross-compile static binaries into bin/linux-ARCH/ for each of PLATFORMS
	for arch in $(subst linux/,,$(platform_list)); do \
		for b in $(BINARIES); do \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -ldflags "$(LDFLAGS)" -o bin/linux-$$arch/$$b ./$$b || exit; \
		done; \
	done

# podman builds one manifest list per image, every platform (--layers=false
# avoids podman#19757), and push sends it. docker builds and pushes every
# platform in one `buildx build --push` per image, without `make images`
# first: Docker could not load what push needs, and nothing is built twice.
images: build-linux ## build $(REGISTRY)/{auth,hello,monolith}:$(VERSION) with CONTAINER_ENGINE: podman every platform, docker this machine's only
ifeq ($(CONTAINER_ENGINE),podman)
	for b in $(BINARIES); do \
		image=$(REGISTRY)/$$b:$(VERSION); \
		podman manifest rm $$image >/dev/null 2>&1; \
		podman build --layers=false --platform $(PLATFORMS) --manifest $$image $(IMAGE_ARGS) -f dockerfiles/$$b.Dockerfile . || exit; \
	done
else
	@echo "images: docker loads $(load_platform) only; make push builds and pushes $(PLATFORMS)"
	for b in $(BINARIES); do \
		docker buildx build --platform $(load_platform) --load -t $(REGISTRY)/$$b:$(VERSION) $(IMAGE_ARGS) -f dockerfiles/$$b.Dockerfile . || exit; \
	done
endif

push: $(if $(filter podman,$(CONTAINER_ENGINE)),images,build-linux) ## push the images (a multi-platform image each, PLATFORMS) to $(REGISTRY)
ifeq ($(CONTAINER_ENGINE),podman)
	for b in $(BINARIES); do \
		image=$(REGISTRY)/$$b:$(VERSION); \
		podman manifest push --all $$image docker://$$image || exit; \
	done
else
ifneq ($(DOCKER_BUILDER),)
	docker buildx inspect $(DOCKER_BUILDER) >/dev/null 2>&1 || \
		docker buildx create --name $(DOCKER_BUILDER) --driver docker-container --driver-opt network=host
endif
	for b in $(BINARIES); do \
		docker buildx build $(if $(DOCKER_BUILDER),--builder $(DOCKER_BUILDER)) --platform $(PLATFORMS) --push -t $(REGISTRY)/$$b:$(VERSION) $(IMAGE_ARGS) -f dockerfiles/$$b.Dockerfile . || exit; \
	done
endif

test-containers: ## build the images with podman, check them, make push them to a local registry, and roll hello 1.0.0 -> 2.0.0 under load through nginx
	CONTAINER_TESTS=1 go test -count=1 -v -timeout 10m ./test/containers

set-registry: ## point every manifest under kubernetes/ at REGISTRY, where make push put the images (git diff kubernetes/ shows it)
	kubernetes/deploy.sh set-registry "$(REGISTRY)"

secrets: ## upload the token keys (made once in keys/, never replaced), keys/users if present, the lessons' TLS Secret and proxy ConfigMap, in the current kubectl context
	NAMESPACE=$(NAMESPACE) KEYS_DIR=$(KEYS_DIR) kubernetes/deploy.sh secrets

rotate: ## rotate the token keys on the cluster, no one logged out: STEP=add, promote, retire (each: keys/, upload, wait for every pod)
	NAMESPACE=$(NAMESPACE) KEYS_DIR=$(KEYS_DIR) FORCE=$(FORCE) kubernetes/deploy.sh rotate "$(STEP)"

deploy: ## deploy auth, hello and the frontend through kubernetes/overlays/$(OVERLAY) (gke, eks, local) to the current kubectl context
	NAMESPACE=$(NAMESPACE) KEYS_DIR=$(KEYS_DIR) kubernetes/deploy.sh deploy "$(OVERLAY)"

undeploy: ## delete what deploy made (OVERLAY as for deploy), with its Secrets and ConfigMaps
	NAMESPACE=$(NAMESPACE) kubernetes/deploy.sh undeploy "$(OVERLAY)"

cluster-up: ## start a two-node Kubernetes built from source (root; the first build takes 15-25 min, then it is cached)
	test/cluster/cluster.sh up

cluster-down: ## stop that cluster and undo every change it made to the host
	test/cluster/cluster.sh down

test-cluster: ## the course end to end on that cluster, rollouts under load through the frontend (root)
	test/cluster/e2e.sh

clean: ## remove build output
	rm -rf bin
