// Package check tests the app's monitoring files against Prometheus itself:
// promtool checks and unit-tests monitoring/rules.yaml, every PromQL
// expression of the rules and of the Grafana dashboard must parse and name
// only series and labels that the real binaries export on their ops port,
// and the rule resources of kubernetes/components are generated from the
// rules file (go generate) and must not differ from it.
//
// It is a module of its own, as kubernetes/check is, so that the app's
// go.mod does not carry Prometheus' dependencies. Its tool directives pin
// promtool and the prometheus server that test/cluster/build.sh builds for
// the test cluster.
package check

//go:generate go run ./gen
