package check

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RulesFile is the rules' one source, relative to this package.
const RulesFile = "../rules.yaml"

// A Resource is a Kubernetes object that wraps the rules file's groups.
type Resource struct {
	Path       string // where it is checked in, relative to this package
	APIVersion string
	Kind       string
	Doc        string // what reads it
}

// Resources are the generated rule objects: the Prometheus Operator's
// PrometheusRule and GKE Managed Prometheus' Rules. Both take the rule
// file's groups as spec.groups, in the rule file's format.
var Resources = []Resource{
	{
		Path:       "../../kubernetes/components/prometheus-operator/prometheusrule.yaml",
		APIVersion: "monitoring.coreos.com/v1",
		Kind:       "PrometheusRule",
		Doc:        "the Prometheus Operator loads it into the Prometheus servers whose ruleSelector matches its labels",
	},
	{
		Path:       "../../kubernetes/components/gke-managed-prometheus/rules.yaml",
		APIVersion: "monitoring.googleapis.com/v1",
		Kind:       "Rules",
		Doc:        "GKE Managed Prometheus' rule evaluator runs it on this namespace's series",
	},
}

// Render returns r's YAML for the rule file rules: a header, the object's
// metadata, and the file from its "groups:" line on, indented under spec.
// The groups are copied as text, comments and all, so the object says
// exactly what the file says.
func (r Resource) Render(rules []byte) ([]byte, error) {
	start := bytes.Index(rules, []byte("\ngroups:\n"))
	if start < 0 {
		return nil, fmt.Errorf("%s: no top-level groups: line", RulesFile)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated from monitoring/rules.yaml by monitoring/check (go generate): do not edit.\n")
	fmt.Fprintf(&b, "# A %s: %s.\n", r.Kind, r.Doc)
	fmt.Fprintf(&b, "apiVersion: %s\nkind: %s\n", r.APIVersion, r.Kind)
	b.WriteString("metadata:\n  name: ud615\n  labels:\n")
	for _, l := range [][2]string{
		{"app", "ud615"},
		{"app.kubernetes.io/name", "ud615"},
		{"app.kubernetes.io/instance", "ud615"},
		{"app.kubernetes.io/component", "monitoring"},
		{"app.kubernetes.io/part-of", "ud615"},
		{"app.kubernetes.io/managed-by", "kubectl"},
	} {
		fmt.Fprintf(&b, "    %s: %s\n", l[0], l[1])
	}
	b.WriteString("spec:\n")
	for line := range strings.Lines(string(rules[start+1:])) {
		if strings.TrimSpace(line) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("  " + line)
	}
	return b.Bytes(), nil
}

// Generate writes every Resource from the rules file.
func Generate() error {
	rules, err := os.ReadFile(RulesFile)
	if err != nil {
		return err
	}
	for _, r := range Resources {
		out, err := r.Render(rules)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(r.Path, out, 0o644); err != nil {
			return err
		}
	}
	return nil
}
