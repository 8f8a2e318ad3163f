// Package check holds the offline tests of the Kubernetes manifests in
// kubernetes/: they decode strictly into the API types, pass the Pod Security
// "restricted" evaluator, and agree with each other, with kubernetes/deploy.sh,
// with nginx/, with the Makefile, with docs/tutorial.md and with the code
// (probe paths, ports and settings come from the app's own packages).
//
// It is a module of its own so that the Kubernetes libraries stay out of the
// app's go.mod: run it with `cd kubernetes/check && go test ./...`.
package check
