package check

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// wantTargets is which pod templates each Service file is meant to select, as
// committed. services/monolith.yaml selects nothing until the labels lesson
// (see TestMonolithServiceAfterLabelLesson).
var wantTargets = map[string][]string{
	"services/auth.yaml":     {"deployments/auth.yaml"},
	"services/frontend.yaml": {"deployments/frontend.yaml"},
	// app=hello: the stable track and the canary (and blue and green, which
	// the blue-green lesson starts only after switching to hello-blue.yaml).
	"services/hello.yaml": {"deployments/hello-blue.yaml", "deployments/hello-canary.yaml",
		"deployments/hello-green.yaml", "deployments/hello.yaml"},
	"services/hello-blue.yaml":  {"deployments/hello-blue.yaml"},
	"services/hello-green.yaml": {"deployments/hello-green.yaml"},
	"services/monolith.yaml":    nil,
}

// targets returns the files of the pod templates that the Service selects.
func targets(t *testing.T, svc *corev1.Service, all []pod) []string {
	t.Helper()
	var files []string
	for _, p := range all {
		if len(svc.Spec.Selector) > 0 && matchesMap(svc.Spec.Selector, p.labels) {
			files = append(files, p.file)
		}
	}
	slices.Sort(files)
	return files
}

func matchesMap(selector, set map[string]string) bool {
	for k, v := range selector {
		if set[k] != v {
			return false
		}
	}
	return true
}

// TestServices checks that each Service selects the pods it is meant for and
// that its target ports name their container ports.
func TestServices(t *testing.T) {
	all := pods(t)
	services := ofType[*corev1.Service](objects(t))
	seen := map[string]bool{}
	for _, s := range services {
		seen[s.file] = true
		want, ok := wantTargets[s.file]
		if !ok {
			t.Errorf("%s: not in wantTargets: say which pods it is for", s.file)
			continue
		}
		got := targets(t, s.v, all)
		if !slices.Equal(got, want) {
			t.Errorf("%s: selector %v selects %q, want %q", s.file, s.v.Spec.Selector, got, want)
		}
		for _, sp := range s.v.Spec.Ports {
			if sp.TargetPort.Type != intstr.String {
				t.Errorf("%s: port %s: targetPort %s, want a container port's name", s.file, sp.Name, sp.TargetPort.String())
				continue
			}
			if sp.TargetPort.StrVal == "health" {
				t.Errorf("%s: port %s exposes the ops port", s.file, sp.Name)
			}
			for _, p := range all {
				if !slices.Contains(want, p.file) && !(s.file == "services/monolith.yaml" && p.file == "pods/secure-monolith.yaml") {
					continue
				}
				if _, _, ok := containerPort(p, sp.TargetPort.StrVal); !ok {
					t.Errorf("%s: targetPort %s is not a container port of %v", s.file, sp.TargetPort.StrVal, p)
				}
			}
		}
	}
	for f := range wantTargets {
		if !seen[f] {
			t.Errorf("%s: missing", f)
		}
	}

	// The course's ports.
	want := map[string]map[string]int32{ // file: port name: port
		"services/auth.yaml":     {"http": 80},
		"services/hello.yaml":    {"http": 80},
		"services/frontend.yaml": {"https": 443, "http": 80},
		"services/monolith.yaml": {"https": 443},
	}
	for _, s := range services {
		w, ok := want[s.file]
		if !ok {
			continue
		}
		got := map[string]int32{}
		for _, sp := range s.v.Spec.Ports {
			got[sp.Name] = sp.Port
		}
		if !maps.Equal(got, w) {
			t.Errorf("%s: ports %v, want %v", s.file, got, w)
		}
		if s.file == "services/monolith.yaml" && (s.v.Spec.Type != corev1.ServiceTypeNodePort || s.v.Spec.Ports[0].NodePort != 31000) {
			t.Errorf("%s: want type NodePort on node port 31000 (the firewall rule in docs/tutorial.md)", s.file)
		}
		if s.file == "services/frontend.yaml" && s.v.Spec.Type != corev1.ServiceTypeLoadBalancer {
			t.Errorf("%s: type %s, want LoadBalancer", s.file, s.v.Spec.Type)
		}
	}
}

// TestMonolithServiceAfterLabelLesson applies the labels lesson's
// `kubectl label pods ...` from docs/tutorial.md and checks that only then
// the monolith Service selects exactly the secure monolith.
func TestMonolithServiceAfterLabelLesson(t *testing.T) {
	tutorial := readTutorial(t)
	m := regexp.MustCompile(`(?m)^kubectl label pods? (\S+) (\S+)=(\S+)\s*$`).FindStringSubmatch(tutorial)
	if m == nil {
		t.Fatal("docs/tutorial.md: no `kubectl label pods NAME KEY=VALUE` line")
	}
	name, key, value := m[1], m[2], m[3]
	all := pods(t)
	found := false
	for i, p := range all {
		if p.owner == "Pod/"+name {
			found = true
			l := maps.Clone(p.labels)
			l[key] = value
			all[i].labels = l
		}
	}
	if !found {
		t.Fatalf("docs/tutorial.md labels pod %s, which no file under pods/ defines", name)
	}
	for _, s := range ofType[*corev1.Service](objects(t)) {
		if s.file != "services/monolith.yaml" {
			continue
		}
		if got, want := targets(t, s.v, all), []string{"pods/secure-monolith.yaml"}; !slices.Equal(got, want) {
			t.Errorf("after kubectl label pods %s %s=%s: %s selects %q, want %q", name, key, value, s.file, got, want)
		}
	}
}

// TestNetworkPolicies checks that every pod is isolated both ways, that only
// the frontend reaches the auth and hello app ports and nothing their ops
// port, and that every selector and named port refers to something real
// (kube-linter: dangling-networkpolicy, dangling-networkpolicypeer-podselector;
// kube-score: pod-networkpolicy, networkpolicy-targets-pod).
func TestNetworkPolicies(t *testing.T) {
	all := pods(t)
	policies := ofType[*networkingv1.NetworkPolicy](objects(t))
	selected := func(np *networkingv1.NetworkPolicy) []pod {
		var out []pod
		for _, p := range all {
			if selects(t, &np.Spec.PodSelector, p.labels) {
				out = append(out, p)
			}
		}
		return out
	}
	hasType := func(np *networkingv1.NetworkPolicy, ty networkingv1.PolicyType) bool {
		return slices.Contains(np.Spec.PolicyTypes, ty)
	}
	for _, np := range policies {
		sel := selected(np.v)
		if len(sel) == 0 {
			t.Errorf("%v: NetworkPolicy %s selects no pod", np.doc, np.v.Name)
		}
		for _, rule := range np.v.Spec.Ingress {
			checkPorts(t, np.doc, rule.Ports, sel)
			checkPeers(t, np.doc, rule.From, all)
		}
		for _, rule := range np.v.Spec.Egress {
			checkPeers(t, np.doc, rule.To, all)
			if len(rule.To) > 0 { // named ports are the destination pods'
				var dest []pod
				for _, p := range all {
					for _, peer := range rule.To {
						if peer.PodSelector != nil && selects(t, peer.PodSelector, p.labels) {
							dest = append(dest, p)
						}
					}
				}
				checkPorts(t, np.doc, rule.Ports, dest)
			}
		}
	}
	for _, p := range all {
		var in, out bool
		for _, np := range policies {
			if selects(t, &np.v.Spec.PodSelector, p.labels) {
				in = in || hasType(np.v, networkingv1.PolicyTypeIngress)
				out = out || hasType(np.v, networkingv1.PolicyTypeEgress)
			}
		}
		if !in || !out {
			t.Errorf("%v: isolated for ingress %v, egress %v: want both", p, in, out)
		}
		if app := p.labels["app"]; app != "auth" && app != "hello" && app != "monolith" {
			continue
		}
		// Every ingress rule that applies to auth, hello or the monolith:
		// from the frontend's pods to the app port, or from the monitoring
		// namespace's Prometheus pods to the ops port; nothing else.
		scraped := false
		for _, np := range policies {
			if !selects(t, &np.v.Spec.PodSelector, p.labels) {
				continue
			}
			for _, rule := range np.v.Spec.Ingress {
				if p.labels["app"] == "monolith" && len(rule.From) == 0 && onlyPort(rule.Ports, "https") {
					continue // the NodePort lesson: anyone reaches the nginx sidecar (services/monolith.yaml)
				}
				if len(rule.From) == 0 || len(rule.Ports) == 0 {
					t.Errorf("%v: NetworkPolicy %s lets anyone in (a rule without from or ports)", p, np.v.Name)
				}
				for _, peer := range rule.From {
					port, problem := peerPort(t, peer, all)
					if problem != "" {
						t.Errorf("%v: NetworkPolicy %s: %s", p, np.v.Name, problem)
						continue
					}
					for _, pp := range rule.Ports {
						if pp.Port == nil || pp.Port.String() != port {
							t.Errorf("%v: NetworkPolicy %s opens port %v to %v, want only %s", p, np.v.Name, pp.Port, peer, port)
						}
					}
					scraped = scraped || port == "health"
				}
			}
		}
		if !scraped {
			t.Errorf("%v: no NetworkPolicy admits the monitoring namespace's Prometheus to port health: /metrics cannot be scraped", p)
		}
	}
}

// onlyPort reports whether ports names port and nothing else.
func onlyPort(ports []networkingv1.NetworkPolicyPort, port string) bool {
	for _, p := range ports {
		if p.Port == nil || p.Port.String() != port {
			return false
		}
	}
	return len(ports) > 0
}

// The peer that may scrape the ops port: the Prometheus pods of the
// monitoring namespace (see ops-from-monitoring in networkpolicies.yaml).
// The test cluster's Prometheus (test/cluster/manifests/prometheus.yaml)
// carries these labels; TestClusterPrometheusMatchesPolicy checks it.
const (
	monitoringNamespace = "monitoring"
	prometheusPodLabel  = "app.kubernetes.io/name=prometheus"
)

// peerPort returns the one port a peer of an ingress rule of auth, hello or
// the monolith may reach: http for the frontend's pods, health for the
// monitoring namespace's Prometheus pods; or what is wrong with the peer.
func peerPort(t *testing.T, peer networkingv1.NetworkPolicyPeer, all []pod) (string, string) {
	t.Helper()
	switch {
	case peer.IPBlock != nil:
		return "", fmt.Sprintf("peer %v: an address block, want pods", peer)
	case peer.PodSelector == nil:
		return "", fmt.Sprintf("peer %v: a whole namespace, want only its Prometheus pods", peer)
	case peer.NamespaceSelector == nil:
		for _, q := range all {
			if selects(t, peer.PodSelector, q.labels) && q.labels["app"] != "frontend" {
				return "", fmt.Sprintf("peer %v lets %v in", peer, q)
			}
		}
		return "http", ""
	}
	ns, pods := peer.NamespaceSelector, peer.PodSelector
	key, value, _ := strings.Cut(prometheusPodLabel, "=")
	if len(ns.MatchExpressions) > 0 || !maps.Equal(ns.MatchLabels, map[string]string{"kubernetes.io/metadata.name": monitoringNamespace}) {
		return "", fmt.Sprintf("peer %v: namespaces %v, want only the one named %s", peer, ns, monitoringNamespace)
	}
	if len(pods.MatchExpressions) > 0 || !maps.Equal(pods.MatchLabels, map[string]string{key: value}) {
		return "", fmt.Sprintf("peer %v: pods %v, want only %s", peer, pods, prometheusPodLabel)
	}
	return "health", ""
}

// checkPeers fails for a pod selector that selects no pod here.
func checkPeers(t *testing.T, d doc, peers []networkingv1.NetworkPolicyPeer, all []pod) {
	t.Helper()
	for _, peer := range peers {
		if peer.PodSelector == nil || peer.NamespaceSelector != nil {
			continue
		}
		n := 0
		for _, p := range all {
			if selects(t, peer.PodSelector, p.labels) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%v: peer selector %v selects no pod", d, peer.PodSelector)
		}
	}
}

// checkPorts fails for a named port that none of the pods declares.
func checkPorts(t *testing.T, d doc, ports []networkingv1.NetworkPolicyPort, pods []pod) {
	t.Helper()
	for _, port := range ports {
		if port.Port == nil || port.Port.Type != intstr.String {
			continue // a number (DNS) or every port
		}
		found := false
		for _, p := range pods {
			_, _, ok := containerPort(p, port.Port.StrVal)
			found = found || ok
		}
		if !found {
			t.Errorf("%v: port %s is not a container port of the pods it applies to", d, port.Port.StrVal)
		}
	}
}

// TestPeerPort shows which peers the NetworkPolicy check accepts for auth,
// hello and the monolith, and which port each may reach.
func TestPeerPort(t *testing.T) {
	all := pods(t)
	sel := func(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }
	monitoring := sel(map[string]string{"kubernetes.io/metadata.name": "monitoring"})
	prometheus := sel(map[string]string{"app.kubernetes.io/name": "prometheus"})
	tests := []struct {
		name     string
		peer     networkingv1.NetworkPolicyPeer
		wantPort string // "" for a refused peer
	}{
		{"the frontend's pods", networkingv1.NetworkPolicyPeer{PodSelector: sel(map[string]string{"app": "frontend"})}, "http"},
		{"every pod of the namespace", networkingv1.NetworkPolicyPeer{PodSelector: sel(nil)}, ""},
		{"Prometheus in monitoring", networkingv1.NetworkPolicyPeer{NamespaceSelector: monitoring, PodSelector: prometheus}, "health"},
		{"all of monitoring", networkingv1.NetworkPolicyPeer{NamespaceSelector: monitoring}, ""},
		{"Prometheus in any namespace", networkingv1.NetworkPolicyPeer{NamespaceSelector: sel(nil), PodSelector: prometheus}, ""},
		{"any pod in monitoring", networkingv1.NetworkPolicyPeer{NamespaceSelector: monitoring, PodSelector: sel(nil)}, ""},
		{"an address block", networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}, ""},
	}
	for _, tt := range tests {
		port, problem := peerPort(t, tt.peer, all)
		if port != tt.wantPort || (problem == "") != (tt.wantPort != "") {
			t.Errorf("peerPort(%s) = %q, %q; want port %q", tt.name, port, problem, tt.wantPort)
		}
	}
}
