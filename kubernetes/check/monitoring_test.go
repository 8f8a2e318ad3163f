package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// renderWithComponent renders the local overlay with one of components/
// and returns the kinds of the monitoring objects it adds (their CRDs are
// not in the scheme: kind and apiVersion only) and the strictly decoded rest.
func renderWithComponent(t *testing.T, component string) (monitoring []string, objs []object) {
	t.Helper()
	root := configuredRepo(t)
	dir, err := os.MkdirTemp(filepath.Join(root, "kubernetes", "overlays"), "monitoring-")
	if err != nil {
		t.Fatal(err)
	}
	k := "resources:\n  - ../local\ncomponents:\n  - ../../components/" + component + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocs("kustomize build with "+component, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		var tm struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(d.data, &tm); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(tm.APIVersion, "monitoring.") {
			monitoring = append(monitoring, tm.APIVersion+" "+tm.Kind)
			continue
		}
		o, err := decodeDocs(d.file, d.data)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	slices.Sort(monitoring)
	return monitoring, objs
}

// scrapePeer returns the namespace and pod labels of ops-from-monitoring's peer.
func scrapePeer(t *testing.T, objs []object) (map[string]string, map[string]string) {
	t.Helper()
	for _, np := range ofType[*networkingv1.NetworkPolicy](objs) {
		if np.v.Name == "ops-from-monitoring" {
			peer := np.v.Spec.Ingress[0].From[0]
			return peer.NamespaceSelector.MatchLabels, peer.PodSelector.MatchLabels
		}
	}
	t.Fatal("no NetworkPolicy ops-from-monitoring")
	return nil, nil
}

// TestMonitoringComponents renders the overlay with each monitoring
// component, as their comments tell users to: each adds its scrape and
// rule objects (the base has none: it deploys without their CRDs), and the
// GKE one points the scrape policy at Managed Prometheus' collectors.
func TestMonitoringComponents(t *testing.T) {
	tests := []struct {
		component  string
		want       []string
		ns, podSel string // the scrape peer after the component
	}{
		{"prometheus-operator", []string{"monitoring.coreos.com/v1 PodMonitor", "monitoring.coreos.com/v1 PrometheusRule"}, monitoringNamespace, prometheusPodLabel},
		{"gke-managed-prometheus", []string{"monitoring.googleapis.com/v1 PodMonitoring", "monitoring.googleapis.com/v1 Rules"}, "gmp-system", "app.kubernetes.io/name=collector"},
	}
	for _, tt := range tests {
		t.Run(tt.component, func(t *testing.T) {
			kinds, objs := renderWithComponent(t, tt.component)
			if !slices.Equal(kinds, tt.want) {
				t.Errorf("monitoring objects %q, want %q", kinds, tt.want)
			}
			ns, pods := scrapePeer(t, objs)
			key, value, _ := strings.Cut(tt.podSel, "=")
			if len(ns) != 1 || ns["kubernetes.io/metadata.name"] != tt.ns || len(pods) != 1 || pods[key] != value {
				t.Errorf("ops-from-monitoring admits namespaces %v, pods %v; want namespace %s, pods %s", ns, pods, tt.ns, tt.podSel)
			}
		})
	}
}

// TestClusterPrometheusMatchesPolicy checks that the test cluster's
// Prometheus (test/cluster/manifests/prometheus.yaml) runs where and as
// ops-from-monitoring admits: otherwise e2e.sh's scrape would test nothing
// once policies are enforced.
func TestClusterPrometheusMatchesPolicy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(kubeDir, "..", "test", "cluster", "manifests", "prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.NewReplacer("${APP_NAMESPACE}", "ud615", "${PROMETHEUS_IMAGE}", "docker.io/prom/prometheus:v3").Replace(string(data)))
	objs, err := decodeDocs("test/cluster/manifests/prometheus.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	key, value, _ := strings.Cut(prometheusPodLabel, "=")
	n := 0
	for _, d := range ofType[*appsv1.Deployment](objs) {
		n++
		if d.v.Namespace != monitoringNamespace || d.v.Spec.Template.Labels[key] != value {
			t.Errorf("%v: namespace %q, pod labels %v; ops-from-monitoring admits %s in %s", d.doc, d.v.Namespace, d.v.Spec.Template.Labels, prometheusPodLabel, monitoringNamespace)
		}
	}
	if n != 1 {
		t.Errorf("%d Deployments, want the Prometheus one", n)
	}
}
