package check

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// metricsLag is how old the CPU figures the HPA acts on can be: metrics-server
// scrapes the kubelets every 15 s (its --metric-resolution) and the HPA
// controller reads them every 15 s (kube-controller-manager's
// --horizontal-pod-autoscaler-sync-period), Kubernetes' defaults, which GKE
// and EKS keep.
const metricsLag = 30 * time.Second

// autoscaled are the Deployments make deploy scales by CPU (kubernetes/base).
var autoscaled = []string{"auth", "hello", "frontend"}

// hpaProblems checks h, the HorizontalPodAutoscaler of Deployment d, whose
// pods pdb guards, against the deployment's drain timing:
//   - d sets no replicas (every kubectl apply would reset the HPA's count);
//   - it scales on CPU utilization, which every container requests;
//   - minReplicas leaves a pod serving while the PDB allows an eviction;
//   - a scale-down takes the highest recommendation of a window longer than
//     a removed pod's drain plus metricsLag: until the removed pods' traffic
//     has moved to the rest and shows in their CPU, the remaining pods look
//     idle, and a shorter window would remove more of them on that;
//   - scale-down steps are further apart than terminationGracePeriodSeconds,
//     so a step's pods are gone (drained, requests finished) before the next.
func hpaProblems(h *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment, pdb *policyv1.PodDisruptionBudget) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ref := h.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		add("scaleTargetRef %s %s/%s, want apps/v1 Deployment/%s", ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if d.Spec.Replicas != nil {
		add("deployment %s sets replicas %d: every kubectl apply (make deploy) would reset the count the HPA chose; leave it out", d.Name, *d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	for _, c := range spec.Containers {
		if q, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok || q.IsZero() {
			add("container %s requests no CPU: the HPA's utilization is usage / request", c.Name)
		}
	}
	if len(h.Spec.Metrics) != 1 || h.Spec.Metrics[0].Type != autoscalingv2.ResourceMetricSourceType ||
		h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU ||
		h.Spec.Metrics[0].Resource.Target.Type != autoscalingv2.UtilizationMetricType ||
		h.Spec.Metrics[0].Resource.Target.AverageUtilization == nil {
		add("metrics %v, want one: Resource cpu, target Utilization", h.Spec.Metrics)
	} else if u := *h.Spec.Metrics[0].Resource.Target.AverageUtilization; u < 1 || u > 100 {
		add("averageUtilization %d %%, want 1-100 %% of the request", u)
	}

	minReplicas := int32(1)
	if h.Spec.MinReplicas != nil {
		minReplicas = *h.Spec.MinReplicas
	}
	if minReplicas < 2 {
		add("minReplicas %d: one pod is an outage at every eviction or crash; want at least 2", minReplicas)
	}
	if h.Spec.MaxReplicas <= minReplicas {
		add("maxReplicas %d <= minReplicas %d: nothing to scale", h.Spec.MaxReplicas, minReplicas)
	}
	switch {
	case pdb == nil:
		add("no PodDisruptionBudget for deployment %s", d.Name)
	case pdb.Spec.MaxUnavailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(minReplicas), true); err != nil || n >= int(minReplicas) {
			add("minReplicas %d with PodDisruptionBudget maxUnavailable %v: a drain may evict every pod", minReplicas, pdb.Spec.MaxUnavailable)
		}
	case pdb.Spec.MinAvailable != nil:
		if n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(minReplicas), true); err != nil || n >= int(minReplicas) {
			add("minReplicas %d with PodDisruptionBudget minAvailable %v: at the minimum no pod may be evicted, and nodes cannot be drained", minReplicas, pdb.Spec.MinAvailable)
		}
	}

	drain, err := podDrain(spec)
	if err != nil {
		add("%v", err)
	}
	grace := time.Duration(deref64(spec.TerminationGracePeriodSeconds, 30)) * time.Second
	down := (*autoscalingv2.HPAScalingRules)(nil)
	if h.Spec.Behavior != nil {
		down = h.Spec.Behavior.ScaleDown
	}
	switch {
	case down == nil || down.StabilizationWindowSeconds == nil || len(down.Policies) == 0:
		add("behavior.scaleDown: set stabilizationWindowSeconds and policies (the defaults remove every spare pod at once)")
	case down.SelectPolicy != nil && *down.SelectPolicy == autoscalingv2.DisabledPolicySelect:
		add("behavior.scaleDown.selectPolicy Disabled: it never scales in")
	default:
		window := time.Duration(*down.StabilizationWindowSeconds) * time.Second
		if err == nil && window < drain+metricsLag {
			add("scaleDown stabilizationWindowSeconds %v < drain %v + metrics lag %v: the HPA judges the remaining pods before the removed pods' traffic reaches them",
				window, drain, metricsLag)
		}
		for _, p := range down.Policies {
			if period := time.Duration(p.PeriodSeconds) * time.Second; period <= grace {
				add("scaleDown policy %s %d per %v <= terminationGracePeriodSeconds %v: a step starts while the last one's pods still drain",
					p.Type, p.Value, period, grace)
			}
			if p.Type == autoscalingv2.PercentScalingPolicy && p.Value > 50 {
				add("scaleDown policy Percent %d: more than half the pods in one step", p.Value)
			}
		}
	}
	return problems
}

// podDrain is how long a terminating pod may still be sent requests: the
// longest preStop (nginx: nginxDrain), else the longest SHUTDOWN_DRAIN (the
// services).
func podDrain(spec corev1.PodSpec) (time.Duration, error) {
	var drain time.Duration
	found := false
	for _, c := range spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			d, err := nginxDrain(c)
			if err != nil {
				return 0, err
			}
			drain = max(drain, d.total())
			found = true
			continue
		}
		if v, ok := envValue(c, "SHUTDOWN_DRAIN"); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return 0, fmt.Errorf("container %s: SHUTDOWN_DRAIN %q: %v", c.Name, v, err)
			}
			drain = max(drain, d)
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("no container drains (no preStop, no SHUTDOWN_DRAIN): a scale-in drops requests")
	}
	return drain, nil
}

// checkAutoscalers checks objs, a set of manifests, as hpaProblems says,
// and that each of want has exactly one HPA whose target is in objs.
func checkAutoscalers(t *testing.T, objs []object, want []string) {
	t.Helper()
	deployments := map[string]*appsv1.Deployment{}
	for _, d := range ofType[*appsv1.Deployment](objs) {
		deployments[d.v.Name] = d.v
	}
	pdbs := ofType[*policyv1.PodDisruptionBudget](objs)
	targets := map[string]int{}
	for _, h := range ofType[*autoscalingv2.HorizontalPodAutoscaler](objs) {
		d, ok := deployments[h.v.Spec.ScaleTargetRef.Name]
		if !ok {
			t.Errorf("%v: HorizontalPodAutoscaler %s targets %s %s, which is not deployed with it", h.doc, h.v.Name, h.v.Spec.ScaleTargetRef.Kind, h.v.Spec.ScaleTargetRef.Name)
			continue
		}
		targets[d.Name]++
		var pdb *policyv1.PodDisruptionBudget
		for _, p := range pdbs {
			if selects(t, p.v.Spec.Selector, d.Spec.Template.Labels) {
				pdb = p.v
			}
		}
		for _, p := range hpaProblems(h.v, d, pdb) {
			t.Errorf("%v: HorizontalPodAutoscaler %s: %s", h.doc, h.v.Name, p)
		}
	}
	for _, name := range want {
		if targets[name] != 1 {
			t.Errorf("deployment %s: %d HorizontalPodAutoscalers, want 1", name, targets[name])
		}
	}
	for name, d := range deployments {
		if targets[name] == 0 && d.Spec.Replicas == nil {
			t.Errorf("deployment %s sets no replicas and has no HorizontalPodAutoscaler: it runs 1 pod", name)
		}
	}
}

// TestAutoscalers checks the HPAs in the files and in what make deploy
// renders for each provider, whose overlays change the frontend's drain.
func TestAutoscalers(t *testing.T) {
	checkAutoscalers(t, objects(t), autoscaled)
	for _, name := range overlayNames {
		t.Run(name, func(t *testing.T) {
			checkAutoscalers(t, buildOverlay(t, name), autoscaled)
		})
	}
}

// TestHPAProblems proves hpaProblems catches what it is for.
func TestHPAProblems(t *testing.T) {
	good := func() (*autoscalingv2.HorizontalPodAutoscaler, *appsv1.Deployment, *policyv1.PodDisruptionBudget) {
		d := &appsv1.Deployment{}
		d.Name = "frontend"
		grace := int64(65)
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
		d.Spec.Template.Spec.Containers = []corev1.Container{{
			Name:      "nginx",
			Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 30}}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}},
		}}
		pdb := &policyv1.PodDisruptionBudget{}
		one := intstr.FromInt32(1)
		pdb.Spec.MaxUnavailable = &one
		minR, util, window := int32(2), int32(70), int32(300)
		h := &autoscalingv2.HorizontalPodAutoscaler{}
		h.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "frontend"}
		h.Spec.MinReplicas, h.Spec.MaxReplicas = &minR, 6
		h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &util}}}}
		h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
			StabilizationWindowSeconds: &window,
			Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 50, PeriodSeconds: 90}},
		}}
		return h, d, pdb
	}
	if h, d, pdb := good(); len(hpaProblems(h, d, pdb)) > 0 {
		t.Fatalf("hpaProblems(good) = %q, want none", hpaProblems(h, d, pdb))
	}
	tests := []struct {
		name   string
		change func(*autoscalingv2.HorizontalPodAutoscaler, *appsv1.Deployment, *policyv1.PodDisruptionBudget)
		want   string
	}{
		{"replicas in the Deployment", func(_ *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			three := int32(3)
			d.Spec.Replicas = &three
		}, "sets replicas 3"},
		{"another target", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			h.Spec.ScaleTargetRef.Name = "hello"
		}, "scaleTargetRef"},
		{"no CPU request", func(_ *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			d.Spec.Template.Spec.Containers[0].Resources.Requests = nil
		}, "requests no CPU"},
		{"memory metric", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			h.Spec.Metrics[0].Resource.Name = corev1.ResourceMemory
		}, "want one: Resource cpu"},
		{"one pod", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			one := int32(1)
			h.Spec.MinReplicas = &one
		}, "a drain may evict every pod"},
		{"minAvailable = minReplicas", func(_ *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, pdb *policyv1.PodDisruptionBudget) {
			two := intstr.FromInt32(2)
			pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable = nil, &two
		}, "nodes cannot be drained"},
		{"Kubernetes' default window with a short one", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			w := int32(45) // < 30 s preStop + 30 s
			h.Spec.Behavior.ScaleDown.StabilizationWindowSeconds = &w
		}, "stabilizationWindowSeconds 45s < drain 30s"},
		{"no scale-down behavior", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			h.Spec.Behavior = nil
		}, "behavior.scaleDown"},
		{"steps inside the grace period", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			h.Spec.Behavior.ScaleDown.Policies[0].PeriodSeconds = 60 // < 65 s
		}, "a step starts while the last one's pods still drain"},
		{"Kubernetes' default policy", func(h *autoscalingv2.HorizontalPodAutoscaler, _ *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			h.Spec.Behavior.ScaleDown.Policies[0] = autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}
		}, "more than half"},
		{"no drain", func(_ *autoscalingv2.HorizontalPodAutoscaler, d *appsv1.Deployment, _ *policyv1.PodDisruptionBudget) {
			d.Spec.Template.Spec.Containers[0].Lifecycle = nil
		}, "no container drains"},
	}
	for _, tt := range tests {
		h, d, pdb := good()
		tt.change(h, d, pdb)
		got := hpaProblems(h, d, pdb)
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
			t.Errorf("hpaProblems(%s) = %q, want one saying %q", tt.name, got, tt.want)
		}
	}
}

// TestDeployAutoscaled checks deploy.sh's list of autoscaled Deployments
// against the render, and that make deploy hands the count of a Deployment
// applied by an earlier version of the manifests (replicas in its
// last-applied-configuration) to the HPA: it removes the field from the
// annotation, and nothing else, before kubectl apply, which would otherwise
// reset the count to 1.
func TestDeployAutoscaled(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(kubeDir, "deploy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^readonly AUTOSCALED=\(([^)]*)\)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("deploy.sh: no readonly AUTOSCALED=(...) line")
	}
	listed := strings.Fields(string(m[1]))
	var rendered []string
	for _, h := range ofType[*autoscalingv2.HorizontalPodAutoscaler](buildOverlay(t, "local")) {
		if h.v.Name != h.v.Spec.ScaleTargetRef.Name {
			t.Errorf("HorizontalPodAutoscaler %s scales %s: deploy.sh finds an HPA by its Deployment's name", h.v.Name, h.v.Spec.ScaleTargetRef.Name)
		}
		rendered = append(rendered, h.v.Name)
	}
	slices.Sort(listed)
	slices.Sort(rendered)
	if !slices.Equal(listed, rendered) {
		t.Errorf("deploy.sh AUTOSCALED %q, the render's HorizontalPodAutoscalers %q", listed, rendered)
	}

	lastApplied := filepath.Join(t.TempDir(), "last-applied.yaml")
	const old = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hello\nspec:\n  replicas: 3\n  revisionHistoryLimit: 5\n  template:\n    spec:\n      containers: []\n"
	if err := os.WriteFile(lastApplied, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, out, err := fakeCluster(t, configuredRepo(t), []string{"NAMESPACE=shop", "FAKE_LAST_APPLIED=" + lastApplied}, "deploy", "local")
	if err != nil {
		t.Fatalf("deploy.sh deploy local: %v\n%s", err, out)
	}
	released, applied := map[string]bool{}, -1
	for i, args := range calls {
		if j := slices.Index(args, "view-last-applied"); j >= 0 {
			released[args[j+1]] = false
		}
		if slices.Contains(args, "set-last-applied") {
			want := "stdin=" + strings.ReplaceAll(strings.Replace(old, "  replicas: 3\n", "", 1), "\n", "|")
			if args[len(args)-1] != want {
				t.Errorf("kubectl %q, want the last-applied-configuration without replicas on stdin: %s", args, want)
			}
			if applied >= 0 {
				t.Errorf("kubectl apply set-last-applied after kubectl apply -f: the apply has reset the count already")
			}
			for d := range released {
				released[d] = true
			}
		}
		if slices.Contains(args, "apply") && slices.Contains(args, "-l") && !slices.Contains(args, "--server-side") && applied < 0 {
			applied = i
		}
	}
	for _, d := range listed {
		if !released["deployment/"+d] {
			t.Errorf("deploy.sh deploy did not release deployment/%s's replicas before applying (calls: %q)", d, calls)
		}
	}
}

// TestTutorialAutoscalers checks that every HPA the tutorial's kubectl
// commands name (kubectl get/describe/patch hpa NAME) is one the manifests
// make, and that the lesson's minimum is the manifest's (the lesson patches
// it up and back to that number).
func TestTutorialAutoscalers(t *testing.T) {
	hpas := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	for _, h := range ofType[*autoscalingv2.HorizontalPodAutoscaler](objects(t)) {
		hpas[h.v.Name] = h.v
	}
	named := 0
	minRe := regexp.MustCompile(`"minReplicas":(\d+)`)
	var lastMin string
	for _, cmd := range commands(readTutorial(t)) {
		fields := strings.Fields(cmd)
		i := slices.IndexFunc(fields, func(f string) bool { return f == "hpa" || f == "horizontalpodautoscaler" })
		if len(fields) < 3 || fields[0] != "kubectl" || i < 0 || i+1 >= len(fields) || strings.HasPrefix(fields[i+1], "-") {
			continue
		}
		named++
		if hpas[fields[i+1]] == nil {
			t.Errorf("docs/tutorial.md: %s: no HorizontalPodAutoscaler %s in kubernetes/", cmd, fields[i+1])
		}
		if m := minRe.FindStringSubmatch(cmd); m != nil {
			lastMin = m[1]
		}
	}
	if named == 0 {
		t.Error("docs/tutorial.md names no HorizontalPodAutoscaler: the scaling lesson is gone?")
	}
	if h := hpas["hello"]; lastMin != "" && h != nil && h.Spec.MinReplicas != nil && lastMin != fmt.Sprint(*h.Spec.MinReplicas) {
		t.Errorf("docs/tutorial.md leaves hello's minReplicas at %s, the manifest's is %d", lastMin, *h.Spec.MinReplicas)
	}
}
