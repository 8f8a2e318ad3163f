// Package containers tests the images that dockerfiles/ describes, with
// podman: that each runs as a non-root user on a read-only root filesystem
// without capabilities and answers its probes, and that replacing the hello
// containers one by one, 1.0.0 with 2.0.0, behind the edge nginx drops no
// request while the rollout load tester (internal/rollout) runs. It also
// runs the real `make push` with podman for two platforms against a local
// registry (docker-registry) and reads back the multi-platform images; that
// writes bin/linux-ARCH/ in the checkout, as `make build-linux` does.
//
// The tests run only when asked, with CONTAINER_TESTS=1 (make
// test-containers): they build images and take about a minute and a half.
// Asked, they fail without podman, nginx or docker-registry, saying how to
// install them; outside CI a developer may skip them instead with
// SKIP_CONTAINERS=1 (and SKIP_E2E=1 for nginx).
package containers
