package check

import (
	"bytes"
	"os"
	"slices"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestGeneratedResources checks that the rule resources of
// kubernetes/components are what go generate makes of the rules file now.
func TestGeneratedResources(t *testing.T) {
	rules, err := os.ReadFile(RulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Resources {
		want, err := r.Render(rules)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(r.Path)
		if err != nil {
			t.Fatalf("%v (run go generate in monitoring/check)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what %s makes of it: run go generate in monitoring/check", r.Path, RulesFile)
		}
	}
}

// TestPrometheusOperatorResources decodes the component's PodMonitor and
// the generated PrometheusRule strictly into the Prometheus Operator's own
// API types, and checks that the PrometheusRule's groups are the rules
// file's and that the PodMonitor scrapes port health of the app's pods.
func TestPrometheusOperatorResources(t *testing.T) {
	var pr monitoringv1.PrometheusRule
	strictDecode(t, "../../kubernetes/components/prometheus-operator/prometheusrule.yaml", &pr)
	var pm monitoringv1.PodMonitor
	strictDecode(t, "../../kubernetes/components/prometheus-operator/podmonitor.yaml", &pm)

	groups := parseRules(t)
	if len(pr.Spec.Groups) != len(groups.Groups) {
		t.Fatalf("PrometheusRule: %d groups, rules file %d", len(pr.Spec.Groups), len(groups.Groups))
	}
	for i, g := range groups.Groups {
		pg := pr.Spec.Groups[i]
		if pg.Name != g.Name || len(pg.Rules) != len(g.Rules) {
			t.Errorf("PrometheusRule group %d: %s with %d rules, rules file: %s with %d", i, pg.Name, len(pg.Rules), g.Name, len(g.Rules))
			continue
		}
		for j, r := range g.Rules {
			if pg.Rules[j].Expr.String() != r.Expr {
				t.Errorf("PrometheusRule %s rule %d: expr %q, rules file %q", pg.Name, j, pg.Rules[j].Expr.String(), r.Expr)
			}
		}
	}

	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor: %d endpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port == nil || *ep.Port != "health" || ep.Path != "/metrics" {
		t.Errorf("PodMonitor endpoint: port %v path %q, want health /metrics", ep.Port, ep.Path)
	}
	checkSelector(t, "PodMonitor", pm.Spec.Selector)
}

// gmpPodMonitoring is GKE Managed Prometheus' PodMonitoring
// (monitoring.googleapis.com/v1), the fields this app uses, written from
// Google's API reference: no Go module of it is served here. Decoding with
// unknown fields refused catches a misspelt field.
type gmpPodMonitoring struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// TestGKEResources decodes the PodMonitoring and the generated Rules and
// checks them as the Prometheus Operator's are checked.
func TestGKEResources(t *testing.T) {
	var pm gmpPodMonitoring
	strictDecode(t, "../../kubernetes/components/gke-managed-prometheus/podmonitoring.yaml", &pm)
	if pm.APIVersion != "monitoring.googleapis.com/v1" || pm.Kind != "PodMonitoring" {
		t.Errorf("podmonitoring.yaml: %s %s", pm.APIVersion, pm.Kind)
	}
	if len(pm.Spec.Endpoints) != 1 || pm.Spec.Endpoints[0].Port != "health" || pm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitoring endpoints %+v, want port health path /metrics", pm.Spec.Endpoints)
	}
	checkSelector(t, "PodMonitoring", pm.Spec.Selector)

	// Rules has the PrometheusRule's spec: groups in the rule file's format.
	var rules struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       struct {
			Groups []monitoringv1.RuleGroup `json:"groups"`
		} `json:"spec"`
	}
	strictDecode(t, "../../kubernetes/components/gke-managed-prometheus/rules.yaml", &rules)
	if rules.Kind != "Rules" || len(rules.Spec.Groups) == 0 {
		t.Errorf("rules.yaml: kind %s, %d groups", rules.Kind, len(rules.Spec.Groups))
	}
}

// checkSelector wants the pods of auth, hello and the monolith, as the
// NetworkPolicy ops-from-monitoring admits them.
func checkSelector(t *testing.T, what string, sel metav1.LabelSelector) {
	t.Helper()
	exprs := sel.MatchExpressions
	if len(sel.MatchLabels) > 0 || len(exprs) != 1 || exprs[0].Key != "app" || string(exprs[0].Operator) != "In" || !slices.Equal(exprs[0].Values, []string{"auth", "hello", "monolith"}) {
		t.Errorf("%s selector %+v, want app In [auth hello monolith]", what, exprs)
	}
}

func strictDecode(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
