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
# The Kubernetes manifests name the same registry (kubernetes/kustomization.yaml).
CONTAINER_ENGINE ?= docker
REGISTRY         ?= ghcr.io/example/app
PLATFORMS        ?= linux/amd64,linux/arm64
REVISION         ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE           ?= https://example.com/app
IMAGE_ARGS        = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg SOURCE=$(SOURCE)
comma := ,

# Kubernetes: the current kubectl context; NAMESPACE empty means its namespace.
NAMESPACE          ?=
KUBE_SCORE_VERSION := v1.20.0

# govulncheck runs offline against the Go vulnerability database, which the
# module proxy serves as the module golang.org/x/vulndb.
GOVULNCHECK_VERSION := v1.9.0
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018

.DEFAULT_GOAL := help
.PHONY: help build run test bench lint vulncheck clean build-linux images push test-containers certs keys rotate-keys users-file up edge-e2e secrets deploy undeploy test-k8s kube-score test-ui cluster-up cluster-down test-cluster

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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
	$(MAKE) test-ui

test-ui: ## test the UI (frontend/) in headless Chromium through nginx (its own module)
	cd frontend/browsertest && go vet ./... && go mod tidy -diff && go test -race -count=1 ./...

test-k8s: ## check the Kubernetes manifests offline, against the API types and the code (their own module)
	cd kubernetes/check && go vet ./... && go mod tidy -diff && go test -race -count=1 ./...

kube-score: ## install kube-score, which test-k8s runs on the manifests
	go install github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)

edge-e2e: ## the end-to-end tests through real nginx, printing the measured figures
	go test -count=1 -v ./internal/edge/e2e

certs: ## write a CA and a localhost certificate into tls/ (FORCE=1 replaces them, HOSTS=a,b adds names)
	go run ./cmd/certgen -out tls $(if $(FORCE),-force) $(if $(HOSTS),-hosts $(HOSTS))

# Token keys: Ed25519, auth signs with keys/jwt-private.pem, every service
# accepts keys/jwt-public.pem. `make secrets` uploads them.
KEYS_DIR ?= keys

keys: ## write the token signing key pair into keys/ (KEYS_DIR; FORCE=1 replaces it, logging everyone out)
	go run ./cmd/keys gen -dir $(KEYS_DIR) $(if $(FORCE),-force)

rotate-keys: ## one step of a key rotation in keys/: STEP=add, then promote, then retire; make secrets after each
	@case "$(STEP)" in add|promote|retire) ;; *) echo "usage: make rotate-keys STEP=add|promote|retire (in this order, make secrets and wait after each)"; exit 2;; esac
	go run ./cmd/keys $(STEP) -dir $(KEYS_DIR)
	go run ./cmd/keys list -dir $(KEYS_DIR)

users-file: ## write keys/users with one user (NAME, default user) and a random password, printed once
	go run ./cmd/keys users -out $(KEYS_DIR)/users $(if $(NAME),-name $(NAME)) $(if $(FORCE),-force)

# Built and run, not `go run`: go run exits 1 when Ctrl-C stops its child.
up: ## run auth and hello behind nginx on https://localhost:8443 (EDGE_PORT); Ctrl-C stops all
	@mkdir -p bin
	go build -o bin/up ./cmd/up
	bin/up

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

build-linux: ## cross-compile static binaries into bin/linux-ARCH/ for each of PLATFORMS
	for arch in $(subst linux/,,$(subst $(comma), ,$(PLATFORMS))); do \
		for b in $(BINARIES); do \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -ldflags "$(LDFLAGS)" -o bin/linux-$$arch/$$b ./$$b || exit; \
		done; \
	done

# podman makes one manifest list per image (--layers=false avoids
# podman#19757). docker needs the containerd image store to load several
# platforms; otherwise use PLATFORMS=linux/amd64.
images: build-linux ## build $(REGISTRY)/{auth,hello,monolith}:$(VERSION) for PLATFORMS with $(CONTAINER_ENGINE)
	for b in $(BINARIES); do \
		image=$(REGISTRY)/$$b:$(VERSION); \
		if [ "$(CONTAINER_ENGINE)" = podman ]; then \
			podman manifest rm $$image >/dev/null 2>&1; \
			podman build --layers=false --platform $(PLATFORMS) --manifest $$image $(IMAGE_ARGS) -f dockerfiles/$$b.Dockerfile . || exit; \
		else \
			docker buildx build --platform $(PLATFORMS) --load -t $$image $(IMAGE_ARGS) -f dockerfiles/$$b.Dockerfile . || exit; \
		fi; \
	done

push: images ## push the images (a multi-arch manifest list each) to $(REGISTRY)
	for b in $(BINARIES); do \
		image=$(REGISTRY)/$$b:$(VERSION); \
		if [ "$(CONTAINER_ENGINE)" = podman ]; then \
			podman manifest push --all $$image docker://$$image || exit; \
		else \
			docker buildx build --platform $(PLATFORMS) --push -t $$image $(IMAGE_ARGS) -f dockerfiles/$$b.Dockerfile . || exit; \
		fi; \
	done

test-containers: ## build the images with podman, check them, and roll hello 1.0.0 -> 2.0.0 under load through nginx
	CONTAINER_TESTS=1 go test -count=1 -v -timeout 10m ./test/containers

secrets: ## create or update the Secrets and ConfigMaps in the current kubectl context (a JWT key only if there is none)
	NAMESPACE=$(NAMESPACE) kubernetes/deploy.sh secrets

deploy: ## deploy auth, hello and the frontend ($(REGISTRY)/<service>:$(VERSION)) to the current kubectl context
	NAMESPACE=$(NAMESPACE) REGISTRY=$(REGISTRY) VERSION=$(VERSION) kubernetes/deploy.sh deploy

undeploy: ## delete what deploy made, with its Secrets and ConfigMaps
	NAMESPACE=$(NAMESPACE) kubernetes/deploy.sh undeploy

cluster-up: ## start a single-node Kubernetes built from source (root; the first build takes 15-25 min, then it is cached)
	test/cluster/cluster.sh up

cluster-down: ## stop that cluster and undo every change it made to the host
	test/cluster/cluster.sh down

test-cluster: ## the course end to end on that cluster, rollouts under load through the frontend (root)
	test/cluster/e2e.sh

clean: ## remove build output
	rm -rf bin
