# The monolith image: the static binary that `make build-linux` cross-compiled
# (CGO_ENABLED=0, -trimpath, stripped) and nothing else. No shell, no
# package manager, no secrets: JWT_SECRET and USERS_FILE come at run time.
#
# Build from the repository root, which .dockerignore shrinks to bin/:
#   podman build --platform linux/amd64,linux/arm64 --manifest monolith:1.0.0 \
#       --build-arg VERSION=1.0.0 -f dockerfiles/monolith.Dockerfile .
#   docker buildx build --platform linux/amd64,linux/arm64 -t monolith:1.0.0 \
#       --build-arg VERSION=1.0.0 -f dockerfiles/monolith.Dockerfile .
# TARGETARCH is set by BuildKit (docker buildx) and podman for each platform;
# nothing runs at build time, so an arm64 image needs no emulator.
FROM scratch

ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://example.com/app

LABEL org.opencontainers.image.title="monolith" \
      org.opencontainers.image.description="The auth and hello services in one binary." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"

COPY bin/linux-${TARGETARCH}/monolith /monolith

# Numeric, so that Kubernetes' runAsNonRoot can check it without an
# /etc/passwd; above 10000, as the manifests' runAsUser requires. The
# service writes nothing to disk (logs go to stderr): run it with a
# read-only root filesystem.
USER 65532:65532

# 8080: the app API; 8081: probes and /metrics.
EXPOSE 8080 8081

ENTRYPOINT ["/monolith"]
