package check

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// TestPodSecurityRestricted runs every pod template through the Pod Security
// Admission evaluator at the restricted level, latest version: what the API
// server enforces in a namespace labelled
// pod-security.kubernetes.io/enforce=restricted (deploy.sh sets it).
func TestPodSecurityRestricted(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	all := pods(t)
	for _, p := range all {
		res := policy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &p.meta, &p.spec))
		if !res.Allowed {
			t.Errorf("%v: restricted: %s: %s", p, res.ForbiddenReason(), res.ForbiddenDetail())
		}
	}

	// The evaluator is not a no-op: one forbidden setting fails it.
	spec := all[0].spec.DeepCopy()
	yes := true
	spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
	if res := policy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &all[0].meta, spec)); res.Allowed {
		t.Errorf("%v with allowPrivilegeEscalation: true: allowed, want forbidden", all[0])
	}
}

// noProbesByDesign lists the pods without probes: the course's first pod,
// before the probes lesson (pods/healthy-monolith.yaml). No Service selects it.
var noProbesByDesign = map[string]bool{"pods/monolith.yaml": true}

// TestPodRules checks each pod template against the rules of the issue and
// kube-linter's default checks (kube-linter itself is not installable here).
func TestPodRules(t *testing.T) {
	for _, p := range pods(t) {
		t.Run(p.file+"/"+p.name, func(t *testing.T) {
			s := p.spec
			// kube-linter: host-network, host-pid, host-ipc.
			if s.HostNetwork || s.HostPID || s.HostIPC {
				t.Error("uses a host namespace")
			}
			// automountServiceAccountToken: the pods never call the API server.
			if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken is not false")
			}
			// kube-linter: deprecated-service-account-field, non-existent-service-account
			// (no service account other than the namespace's default is named).
			if s.DeprecatedServiceAccount != "" || s.ServiceAccountName != "" {
				t.Errorf("names a service account (%q, %q) that nothing here creates", s.DeprecatedServiceAccount, s.ServiceAccountName)
			}
			psc := s.SecurityContext
			if psc == nil {
				t.Fatal("no pod securityContext")
			}
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("pod seccompProfile is not RuntimeDefault")
			}
			// kube-linter: unsafe-sysctls.
			if len(psc.Sysctls) > 0 {
				t.Errorf("sets sysctls %v", psc.Sysctls)
			}
			// kube-linter: sensitive-host-mounts, docker-sock, writable-host-mount.
			for _, v := range s.Volumes {
				if v.HostPath != nil {
					t.Errorf("volume %s is a hostPath", v.Name)
				}
			}
			portNames := map[string]bool{}
			for _, c := range s.Containers {
				checkContainer(t, p, c, portNames)
			}
			if len(s.InitContainers) > 0 || len(s.EphemeralContainers) > 0 {
				t.Error("has init or ephemeral containers: extend these checks to them")
			}
		})
	}
}

// checkContainer checks one container; portNames collects the pod's port
// names to find duplicates.
func checkContainer(t *testing.T, p pod, c corev1.Container, portNames map[string]bool) {
	t.Helper()
	psc := p.spec.SecurityContext
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("container %s: no securityContext", c.Name)
		return
	}
	// Effective values: the container's, else the pod's.
	runAsNonRoot, user, group := psc.RunAsNonRoot, psc.RunAsUser, psc.RunAsGroup
	if sc.RunAsNonRoot != nil {
		runAsNonRoot = sc.RunAsNonRoot
	}
	if sc.RunAsUser != nil {
		user = sc.RunAsUser
	}
	if sc.RunAsGroup != nil {
		group = sc.RunAsGroup
	}
	// kube-linter: run-as-non-root; kube-score: container-security-context-user-group-id.
	if runAsNonRoot == nil || !*runAsNonRoot {
		t.Errorf("container %s: runAsNonRoot is not true", c.Name)
	}
	if user == nil || *user <= 10000 || group == nil || *group <= 10000 {
		t.Errorf("container %s: runAsUser %v, runAsGroup %v: want both set and above 10000", c.Name, deref(user), deref(group))
	}
	// kube-linter: privilege-escalation-container, privileged-container,
	// no-read-only-root-fs, drop-net-raw-capability.
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("container %s: privileged", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container %s: capabilities %v, want drop [ALL] and no add", c.Name, sc.Capabilities)
	}

	// kube-linter: latest-tag. Images are pinned by tag, pulled on every start.
	if i := strings.LastIndex(c.Image, ":"); i < 0 || strings.Contains(c.Image[i:], "/") || c.Image[i+1:] == "latest" {
		t.Errorf("container %s: image %s, want a tag other than latest", c.Name, c.Image)
	}
	if c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("container %s: imagePullPolicy %q, want Always", c.Name, c.ImagePullPolicy)
	}

	// kube-linter: unset-cpu-requirements, unset-memory-requirements; kube-score:
	// container-resources, container-ephemeral-storage-request-and-limit.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim || req.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("container %s: %s request %v, limit %v: want both, request <= limit", c.Name, r, req.String(), lim.String())
		}
	}
	// GOMEMLIMIT, where set, leaves the GC room below the memory limit.
	if v, ok := envValue(c, "GOMEMLIMIT"); ok {
		limit := c.Resources.Limits[corev1.ResourceMemory]
		q, err := resource.ParseQuantity(strings.TrimSuffix(v, "B"))
		if err != nil || q.Cmp(limit) >= 0 {
			t.Errorf("container %s: GOMEMLIMIT %s (err %v), want below the memory limit %s", c.Name, v, err, limit.String())
		}
	}

	// Ports: named, unprivileged; kube-linter: ssh-port.
	for _, port := range c.Ports {
		if errs := validation.IsValidPortName(port.Name); len(errs) > 0 {
			t.Errorf("container %s: port %d name %q: %v", c.Name, port.ContainerPort, port.Name, errs)
		}
		if portNames[port.Name] {
			t.Errorf("container %s: port name %q used twice in the pod", c.Name, port.Name)
		}
		portNames[port.Name] = true
		if port.ContainerPort <= 1024 || port.ContainerPort == 22 {
			t.Errorf("container %s: port %s is %d, want above 1024", c.Name, port.Name, port.ContainerPort)
		}
	}

	// Probes: both, on named ports of this container; kube-linter:
	// liveness-port, readiness-port, no-liveness-probe, no-readiness-probe;
	// kube-score: pod-probes (readiness and liveness not the same).
	if noProbesByDesign[p.file] {
		if c.ReadinessProbe != nil || c.LivenessProbe != nil {
			t.Errorf("container %s: has probes: take %s out of noProbesByDesign", c.Name, p.file)
		}
	} else {
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("container %s: want a readiness and a liveness probe", c.Name)
		} else if equality.Semantic.DeepEqual(c.ReadinessProbe.ProbeHandler, c.LivenessProbe.ProbeHandler) {
			t.Errorf("container %s: readiness and liveness probes are the same", c.Name)
		}
	}
	for kind, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if pr == nil {
			continue
		}
		var port intstr.IntOrString
		switch {
		case pr.HTTPGet != nil:
			port = pr.HTTPGet.Port
		case pr.TCPSocket != nil:
			port = pr.TCPSocket.Port
		default:
			t.Errorf("container %s: %s probe is neither httpGet nor tcpSocket", c.Name, kind)
			continue
		}
		if !declaresPort(c, port) {
			t.Errorf("container %s: %s probe port %s is not a port name of the container", c.Name, kind, port.String())
		}
		if pr.PeriodSeconds == 0 || pr.TimeoutSeconds == 0 || pr.FailureThreshold == 0 {
			t.Errorf("container %s: %s probe: set periodSeconds, timeoutSeconds and failureThreshold", c.Name, kind)
		}
	}

	// kube-linter: duplicate-env-var, env-var-secret (a secret must come
	// from a secretKeyRef, never a literal).
	seen := map[string]bool{}
	secretish := regexp.MustCompile(`(?i)secret|password`)
	for _, e := range c.Env {
		if seen[e.Name] {
			t.Errorf("container %s: env %s set twice", c.Name, e.Name)
		}
		seen[e.Name] = true
		if secretish.MatchString(e.Name) && e.Value != "" {
			t.Errorf("container %s: env %s has a literal value: use a secretKeyRef", c.Name, e.Name)
		}
	}
}

// declaresPort reports whether port is a name of one of c's ports.
func declaresPort(c corev1.Container, port intstr.IntOrString) bool {
	if port.Type != intstr.String {
		return false // numbers drift from the container's ports: name them
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return true
		}
	}
	return false
}

func deref(p *int64) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// TestDeploymentRules checks rollouts, spreading and disruption budgets.
func TestDeploymentRules(t *testing.T) {
	objs := objects(t)
	deployments := ofType[*appsv1.Deployment](objs)
	pdbs := ofType[*policyv1.PodDisruptionBudget](objs)
	hpas := ofType[*autoscalingv2.HorizontalPodAutoscaler](objs)
	all := pods(t)
	for _, d := range deployments {
		t.Run(d.file, func(t *testing.T) {
			spec := d.v.Spec
			// kube-linter: mismatching-selector.
			if !selects(t, spec.Selector, spec.Template.Labels) {
				t.Errorf("selector %v does not select the template's labels %v", spec.Selector, spec.Template.Labels)
			}
			if spec.Selector.MatchLabels["app"] == "" || spec.Selector.MatchLabels["track"] == "" || len(spec.Selector.MatchExpressions) > 0 {
				t.Errorf("selector %v: want matchLabels app and track (never version: selectors are immutable)", spec.Selector)
			}
			// Overlapping controllers fight over pods.
			for _, p := range all {
				if p.deployment != nil && p.deployment != d.v && selects(t, spec.Selector, p.labels) {
					t.Errorf("selector %v also selects %v", spec.Selector, p)
				}
			}
			// Rolling updates never drop capacity.
			if spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || spec.Strategy.RollingUpdate == nil {
				t.Fatalf("strategy %v, want RollingUpdate", spec.Strategy)
			}
			ru := spec.Strategy.RollingUpdate
			if ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
				t.Errorf("maxUnavailable %v, want 0", ru.MaxUnavailable)
			}
			if ru.MaxSurge == nil || ru.MaxSurge.String() == "0" || ru.MaxSurge.String() == "0%" {
				t.Errorf("maxSurge %v, want at least 1", ru.MaxSurge)
			}
			if spec.ProgressDeadlineSeconds == nil || spec.MinReadySeconds == 0 {
				t.Error("set progressDeadlineSeconds (a stalled rollout is reported) and minReadySeconds")
			}
			// kube-score: deployment-replicas; the canary is one pod on purpose.
			// An autoscaled Deployment's count is its HPA's minReplicas at
			// least (TestAutoscalers).
			replicas := int32(1)
			if spec.Replicas != nil {
				replicas = *spec.Replicas
			}
			for _, h := range hpas {
				if h.v.Spec.ScaleTargetRef.Name == d.v.Name && h.v.Spec.MinReplicas != nil {
					replicas = *h.v.Spec.MinReplicas
				}
			}
			if replicas < 2 && spec.Template.Labels["track"] != "canary" {
				t.Errorf("replicas %d, want at least 2", replicas)
			}
			// kube-linter: no-anti-affinity; kube-score:
			// deployment-has-host-podantiaffinity, pod-topology-spread-constraints.
			checkSpreading(t, spec)
			// One PodDisruptionBudget with the same selector; kube-linter:
			// pdb-max-unavailable, pdb-min-available, pdb-unhealthy-pod-eviction-policy.
			var matching []*policyv1.PodDisruptionBudget
			for _, pdb := range pdbs {
				if selects(t, pdb.v.Spec.Selector, spec.Template.Labels) {
					matching = append(matching, pdb.v)
					if pdb.file != d.file {
						t.Errorf("PodDisruptionBudget %s is in %s, want it next to the Deployment", pdb.v.Name, pdb.file)
					}
				}
			}
			if len(matching) != 1 {
				t.Fatalf("%d PodDisruptionBudgets select the pods, want 1", len(matching))
			}
			pdb := matching[0]
			if !equality.Semantic.DeepEqual(pdb.Spec.Selector, spec.Selector) {
				t.Errorf("PodDisruptionBudget selector %v, want the Deployment's %v", pdb.Spec.Selector, spec.Selector)
			}
			switch {
			case pdb.Spec.MaxUnavailable != nil:
				if pdb.Spec.MaxUnavailable.IntValue() < 1 {
					t.Errorf("PodDisruptionBudget maxUnavailable %v: nodes could never be drained", pdb.Spec.MaxUnavailable)
				}
			case pdb.Spec.MinAvailable != nil:
				if pdb.Spec.MinAvailable.IntValue() >= int(replicas) {
					t.Errorf("PodDisruptionBudget minAvailable %v with %d replicas: nodes could never be drained", pdb.Spec.MinAvailable, replicas)
				}
			default:
				t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
			}
			if pdb.Spec.UnhealthyPodEvictionPolicy == nil {
				t.Error("PodDisruptionBudget: set unhealthyPodEvictionPolicy")
			}
		})
	}
	for _, pdb := range pdbs {
		n := 0
		for _, d := range deployments {
			if selects(t, pdb.v.Spec.Selector, d.v.Spec.Template.Labels) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%v: PodDisruptionBudget %s selects %d Deployments' pods, want 1", pdb.doc, pdb.v.Name, n)
		}
	}
}

func checkSpreading(t *testing.T, spec appsv1.DeploymentSpec) {
	t.Helper()
	a := spec.Template.Spec.Affinity
	hostAnti := false
	if a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if term.PodAffinityTerm.TopologyKey == "kubernetes.io/hostname" && selects(t, term.PodAffinityTerm.LabelSelector, spec.Template.Labels) {
				hostAnti = true
			}
		}
	}
	if !hostAnti {
		t.Error("no preferred pod anti-affinity on kubernetes.io/hostname that selects the pods")
	}
	for _, tsc := range spec.Template.Spec.TopologySpreadConstraints {
		if !selects(t, tsc.LabelSelector, spec.Template.Labels) {
			t.Errorf("topology spread constraint on %s does not select the pods", tsc.TopologyKey)
		}
	}
}

// workloadLabels are on every Deployment, pod template, Pod and (but for the
// version ones) PodDisruptionBudget; commonLabels on every object.
var (
	commonLabels = []string{"app", "app.kubernetes.io/name", "app.kubernetes.io/instance",
		"app.kubernetes.io/component", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}
	workloadLabels = append([]string{"track", "version", "app.kubernetes.io/version"}, commonLabels...)
)

// TestLabels checks the course's labels (app, track, version) and the
// recommended app.kubernetes.io ones. Services and NetworkPolicies span
// tracks and versions, so they carry only the common labels.
func TestLabels(t *testing.T) {
	check := func(where string, got map[string]string, want []string) {
		t.Helper()
		for _, k := range want {
			if got[k] == "" {
				t.Errorf("%s: label %s missing", where, k)
			}
		}
		if got["app"] != got["app.kubernetes.io/name"] {
			t.Errorf("%s: app=%s but app.kubernetes.io/name=%s", where, got["app"], got["app.kubernetes.io/name"])
		}
		if got["version"] != got["app.kubernetes.io/version"] {
			t.Errorf("%s: version=%s but app.kubernetes.io/version=%s", where, got["version"], got["app.kubernetes.io/version"])
		}
		if got["app.kubernetes.io/part-of"] != "ud615" {
			t.Errorf("%s: app.kubernetes.io/part-of=%q, want ud615 (networkpolicies.yaml's default-deny selects it)", where, got["app.kubernetes.io/part-of"])
		}
	}
	for _, o := range objects(t) {
		where := fmt.Sprintf("%v %s/%s", o.doc, o.kind(), o.name())
		// What the API server validates: names (DNS-1035 for Services,
		// DNS-1123 subdomains otherwise) and label keys and values.
		m, err := metaOf(o.obj)
		if err != nil {
			t.Fatal(err)
		}
		nameErrs := validation.IsDNS1123Subdomain(m.Name)
		if o.kind() == "Service" {
			nameErrs = validation.IsDNS1035Label(m.Name)
		}
		for _, e := range nameErrs {
			t.Errorf("%s: name: %s", where, e)
		}
		for _, l := range []map[string]string{m.Labels, podTemplateLabels(o)} {
			for k, v := range l {
				for _, e := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
					t.Errorf("%s: label %s=%s: %s", where, k, v, e)
				}
			}
		}
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			check(where, v.Labels, workloadLabels)
			check(where+" template", v.Spec.Template.Labels, workloadLabels)
			for _, k := range workloadLabels {
				if v.Labels[k] != v.Spec.Template.Labels[k] {
					t.Errorf("%s: label %s=%q, template's %q", where, k, v.Labels[k], v.Spec.Template.Labels[k])
				}
			}
			if v.Labels["app.kubernetes.io/instance"] != v.Name {
				t.Errorf("%s: app.kubernetes.io/instance=%q, want the name", where, v.Labels["app.kubernetes.io/instance"])
			}
		case *corev1.Pod:
			check(where, v.Labels, workloadLabels)
			if v.Labels["app.kubernetes.io/instance"] != v.Name {
				t.Errorf("%s: app.kubernetes.io/instance=%q, want the name", where, v.Labels["app.kubernetes.io/instance"])
			}
		case *policyv1.PodDisruptionBudget:
			check(where, v.Labels, append([]string{"track"}, commonLabels...))
		case *autoscalingv2.HorizontalPodAutoscaler:
			check(where, v.Labels, append([]string{"track"}, commonLabels...))
		default:
			m, err := metaOf(o.obj)
			if err != nil {
				t.Fatal(err)
			}
			check(where, m.Labels, commonLabels)
		}
	}
}

// podTemplateLabels returns a Deployment's template labels, else nil.
func podTemplateLabels(o object) map[string]string {
	if d, ok := o.obj.(*appsv1.Deployment); ok {
		return d.Spec.Template.Labels
	}
	return nil
}
