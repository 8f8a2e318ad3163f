package check

import (
	"maps"
	"regexp"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
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
		if app := p.labels["app"]; app != "auth" && app != "hello" {
			continue
		}
		// Every ingress rule that applies to auth or hello: from the
		// frontend's pods only, to the app port only.
		for _, np := range policies {
			if !selects(t, &np.v.Spec.PodSelector, p.labels) {
				continue
			}
			for _, rule := range np.v.Spec.Ingress {
				if len(rule.From) == 0 || len(rule.Ports) == 0 {
					t.Errorf("%v: NetworkPolicy %s lets anyone in (a rule without from or ports)", p, np.v.Name)
				}
				for _, peer := range rule.From {
					if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
						t.Errorf("%v: NetworkPolicy %s: peer %v, want a pod selector only", p, np.v.Name, peer)
						continue
					}
					for _, q := range all {
						if selects(t, peer.PodSelector, q.labels) && q.labels["app"] != "frontend" {
							t.Errorf("%v: NetworkPolicy %s lets %v in", p, np.v.Name, q)
						}
					}
				}
				for _, port := range rule.Ports {
					if port.Port == nil || port.Port.String() != "http" {
						t.Errorf("%v: NetworkPolicy %s opens port %v, want only http", p, np.v.Name, port.Port)
					}
				}
			}
		}
	}
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
