// Package containers tests the images that dockerfiles/ describes, with
// podman: that each runs as a non-root user on a read-only root filesystem
// without capabilities and answers its probes, and that replacing the hello
// containers one by one, 1.0.0 with 2.0.0, behind the edge nginx drops no
// request while the rollout load tester (internal/rollout) runs.
//
// The tests run only when asked, with CONTAINER_TESTS=1 (make
// test-containers): they build images and take about a minute. Asked, they
// fail without podman or nginx, saying how to install them; outside CI a
// developer may skip them instead with SKIP_CONTAINERS=1 (and SKIP_E2E=1
// for nginx).
package containers
