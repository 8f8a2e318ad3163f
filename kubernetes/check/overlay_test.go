package check

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/edge"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// buildOverlay renders kubernetes/overlays/name of the configured copy
// (images at registry.example/team), as make deploy renders it.
func buildOverlay(t *testing.T, name string) []object {
	t.Helper()
	return build(t, filepath.Join(configuredRepo(t), "kubernetes", "overlays", name))
}

// healthCheck is how a provider's load balancer learns that a node's
// frontend pod has gone (unhealthy) or come (healthy): it polls the node's
// healthCheckNodePort every interval and acts after so many results in a row.
type healthCheck struct {
	interval           time.Duration
	unhealthy, healthy int
	source             string // where the numbers come from
}

// gkeHealthChecks are GKE's L4 load balancer health checks for a Service
// with externalTrafficPolicy: Local, which cannot be tuned from the
// Service: the target pool-based load balancer's (the GCE cloud provider:
// interval 8 s, unhealthy threshold 3, healthy 1, "3 * 8 = 24 seconds
// before the LB will steer traffic away"), and the backend service-based
// one's that overlays/gke asks for (ingress-gce's L4 controller: 3 s, 2, 1).
// The frontend must cover both: a Service made before the annotation keeps
// the older kind.
var gkeHealthChecks = []healthCheck{
	{interval: 8 * time.Second, unhealthy: 3, healthy: 1, source: "GKE's target pool health check"},
	{interval: 3 * time.Second, unhealthy: 2, healthy: 1, source: "GKE's backend service health check"},
}
var gkeHealthCheck = gkeHealthChecks[0]

// drainMargin is the least time the frontend keeps serving beyond the
// load balancer's detection: kube-proxy's health server updating, the
// health checker's timeout, the load balancer acting on the result.
const drainMargin = 5 * time.Second

// awsAnnotation is the prefix of the AWS Load Balancer Controller's annotations.
const awsAnnotation = "service.beta.kubernetes.io/aws-load-balancer-"

// eksHealthCheck reads the health check the AWS Load Balancer Controller
// configures from the frontend Service's annotations. Each must be set:
// the defaults (10 s x 3 with the controller, 30 s x 3 in-tree) are what
// the overlay shortens. AWS allows intervals of 5-300 s and thresholds of
// 2-10.
func eksHealthCheck(svc *corev1.Service) (healthCheck, error) {
	num := func(key string, lo, hi int) (int, error) {
		v, ok := svc.Annotations[awsAnnotation+key]
		if !ok {
			return 0, fmt.Errorf("annotation %s%s not set", awsAnnotation, key)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("annotation %s%s: %q, want %d-%d", awsAnnotation, key, v, lo, hi)
		}
		return n, nil
	}
	interval, err := num("healthcheck-interval", 5, 300)
	if err != nil {
		return healthCheck{}, err
	}
	unhealthy, err := num("healthcheck-unhealthy-threshold", 2, 10)
	if err != nil {
		return healthCheck{}, err
	}
	healthy, err := num("healthcheck-healthy-threshold", 2, 10)
	if err != nil {
		return healthCheck{}, err
	}
	return healthCheck{interval: time.Duration(interval) * time.Second, unhealthy: unhealthy, healthy: healthy,
		source: "the Service's health check annotations"}, nil
}

// drainProblems checks the frontend's timing against the load balancer in
// front of it (hc nil: kube-proxy only, as on the test cluster).
// proxyRead is the longest request nginx waits for.
func drainProblems(hc *healthCheck, d *appsv1.Deployment, proxyRead time.Duration) []string {
	var problems []string
	spec := d.Spec.Template.Spec
	var c *corev1.Container
	for i := range spec.Containers {
		if isNginx(spec.Containers[i]) {
			c = &spec.Containers[i]
		}
	}
	if c == nil {
		return []string{"no nginx container"}
	}
	dr, err := nginxDrain(*c)
	if err != nil {
		return []string{err.Error()}
	}
	wantServe := drainMargin // endpoints and kube-proxy
	if hc != nil {
		wantServe = hc.interval*time.Duration(hc.unhealthy) + drainMargin
		if dr.serve < wantServe {
			problems = append(problems, fmt.Sprintf("preStop serves %v < %v x %d (%s) + %v margin: the load balancer still sends new connections to a node whose frontend has stopped",
				dr.serve, hc.interval, hc.unhealthy, hc.source, drainMargin))
		}
		minReady := time.Duration(d.Spec.MinReadySeconds) * time.Second
		if wantReady := hc.interval * time.Duration(hc.healthy); minReady < wantReady {
			problems = append(problems, fmt.Sprintf("minReadySeconds %v < %v x %d (%s, healthy): the rollout stops old pods before the load balancer sends to the new",
				minReady, hc.interval, hc.healthy, hc.source))
		}
	} else if dr.serve < wantServe {
		problems = append(problems, fmt.Sprintf("preStop serves %v < %v: endpoints and kube-proxy need that to drop the pod", dr.serve, wantServe))
	}
	preStop := dr.total()
	grace := time.Duration(deref64(spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if grace <= preStop+proxyRead {
		problems = append(problems, fmt.Sprintf("terminationGracePeriodSeconds %v <= preStop %v + proxy_read_timeout %v: the kubelet kills nginx mid-request", grace, preStop, proxyRead))
	}
	return problems
}

// frontendProxyRead is the longest proxy_read_timeout of the frontend's config.
func frontendProxyRead(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir, "nginx", "frontend.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	// Only the timeouts matter here: any value will do for the variables.
	vars := map[string]string{}
	for _, name := range edge.EnvReferences(string(data)) {
		vars[name] = "x"
	}
	conf, err := parseNginx(edge.Render(string(data), vars))
	if err != nil {
		t.Fatalf("parsing nginx/frontend.conf.template: %v", err)
	}
	return longestProxyRead(t, conf)
}

// TestOverlays builds every provider's overlay, as make deploy does after
// make set-registry, and checks what it deploys: strictly decoded objects
// (build), the restricted Pod Security profile, no placeholder image,
// every mounted ConfigMap and Secret present with its keys, and the
// provider's load balancer settings and drain arithmetic.
func TestOverlays(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	proxyRead := frontendProxyRead(t)
	for _, name := range overlayNames {
		t.Run(name, func(t *testing.T) {
			objs := buildOverlay(t, name)
			all := podsOf(objs)
			if len(all) < 3 {
				t.Fatalf("%d pod templates, want auth, hello and frontend", len(all))
			}
			for _, p := range all {
				res := policy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &p.meta, &p.spec))
				if !res.Allowed {
					t.Errorf("%v: restricted: %s: %s", p, res.ForbiddenReason(), res.ForbiddenDetail())
				}
				for _, c := range p.spec.Containers {
					if isNginx(c) {
						continue
					}
					if !strings.HasPrefix(c.Image, testRegistry+"/") {
						t.Errorf("%v: image %s after make set-registry REGISTRY=%s", p, c.Image, testRegistry)
					}
				}
			}
			checkOverlayReferences(t, objs, all)

			var svc *corev1.Service
			var frontend *appsv1.Deployment
			for _, o := range objs {
				switch v := o.obj.(type) {
				case *corev1.Service:
					if v.Name == "frontend" {
						svc = v
					}
				case *appsv1.Deployment:
					if v.Name == "frontend" {
						frontend = v
					}
				}
			}
			if svc == nil || frontend == nil {
				t.Fatal("no frontend Service or Deployment")
			}
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				t.Errorf("service frontend: type %s, externalTrafficPolicy %s: want LoadBalancer, Local (client addresses, and the health checks the drain relies on)",
					svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
			}
			var hcs []*healthCheck
			switch name {
			case "gke":
				for i := range gkeHealthChecks {
					hcs = append(hcs, &gkeHealthChecks[i])
				}
				checkArmToleration(t, objs)
			case "eks":
				checkEKSService(t, svc, frontend)
				h, err := eksHealthCheck(svc)
				if err != nil {
					t.Fatalf("service frontend: %v", err)
				}
				hcs = append(hcs, &h)
				checkTrustedProxies(t, objs, "192.168.0.0/16")
			case "local":
				if len(svc.Annotations) > 0 {
					t.Errorf("service frontend: annotations %v on the test cluster, which has no cloud load balancer", svc.Annotations)
				}
				// The test cluster's load balancer double runs with GKE's
				// backend service health check (test/cluster, profile gke-rbs).
				hcs = append(hcs, &gkeHealthChecks[1])
			}
			for _, hc := range hcs {
				for _, p := range drainProblems(hc, frontend, proxyRead) {
					t.Errorf("deployment frontend: %s", p)
				}
			}
		})
	}
}

// TestDrainProblems proves the drain check catches what it is for: the old
// 10 s preStop behind GKE's and AWS's default health checks.
func TestDrainProblems(t *testing.T) {
	d := &appsv1.Deployment{}
	d.Spec.MinReadySeconds = 5
	grace := int64(45)
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "nginx", Image: "nginxinc/nginx-unprivileged:1.28.0-alpine",
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 10}}}}}
	if p := drainProblems(nil, d, 30*time.Second); len(p) != 0 {
		t.Errorf("drainProblems(kube-proxy only, preStop 10 s, grace 45 s) = %q, want none", p)
	}
	inTreeNLB := healthCheck{interval: 30 * time.Second, unhealthy: 3, healthy: 3, source: "in-tree NLB"}
	for _, hc := range []healthCheck{gkeHealthCheck, inTreeNLB} {
		p := drainProblems(&hc, d, 30*time.Second)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.HasPrefix(s, "preStop serves 10s") }) {
			t.Errorf("drainProblems(%s, preStop 10 s) = %q, want the preStop too short", hc.source, p)
		}
	}
	if p := drainProblems(nil, d, 60*time.Second); len(p) != 1 {
		t.Errorf("drainProblems(grace 45 s, proxy_read_timeout 60 s) = %q, want the grace period too short", p)
	}

	// The frontend's form: serve 30 s, unready 15 s behind a 5 s x 2
	// readiness probe of /healthz, grace 80 s.
	frontend := func() *appsv1.Deployment {
		d := d.DeepCopy()
		d.Spec.MinReadySeconds = 10
		grace := int64(80)
		d.Spec.Template.Spec.TerminationGracePeriodSeconds = &grace
		c := &d.Spec.Template.Spec.Containers[0]
		c.Lifecycle.PreStop = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", drainScript}}}
		c.Env = []corev1.EnvVar{{Name: edge.VarDrainFile, Value: "/tmp/draining"}, {Name: "DRAIN_SERVE_SECONDS", Value: "30"}, {Name: "DRAIN_UNREADY_SECONDS", Value: "15"}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Scheme: corev1.URISchemeHTTPS}}, PeriodSeconds: 5, FailureThreshold: 2}
		return d
	}
	if p := drainProblems(&gkeHealthCheck, frontend(), 30*time.Second); len(p) != 0 {
		t.Errorf("drainProblems(%s, the frontend's drain) = %q, want none", gkeHealthCheck.source, p)
	}
	for _, tt := range []struct {
		name   string
		change func(*corev1.Container)
		want   string
	}{
		{"unready shorter than the probe's failures", func(c *corev1.Container) { c.Env[2].Value = "12" }, "DRAIN_UNREADY_SECONDS 12s < readiness 10s"},
		{"probe's defaults", func(c *corev1.Container) { c.ReadinessProbe.PeriodSeconds, c.ReadinessProbe.FailureThreshold = 0, 0 }, "DRAIN_UNREADY_SECONDS 15s < readiness 30s"},
		{"readiness not /healthz", func(c *corev1.Container) { c.ReadinessProbe.HTTPGet.Path = "/" }, "is not GET /healthz"},
		{"readiness over plain HTTP", func(c *corev1.Container) { c.ReadinessProbe.HTTPGet.Scheme = corev1.URISchemeHTTP }, "is not GET /healthz over HTTPS"},
		{"another script", func(c *corev1.Container) { c.Lifecycle.PreStop.Exec.Command[2] = "sleep 45" }, "want a sleep, or exec"},
		{"no drain file", func(c *corev1.Container) { c.Env = c.Env[1:] }, "EDGE_DRAIN_FILE"},
		{"serve not a number", func(c *corev1.Container) { c.Env[1].Value = "30s" }, `DRAIN_SERVE_SECONDS "30s"`},
		{"serve shorter than the health check", func(c *corev1.Container) { c.Env[1].Value = "20" }, "preStop serves 20s < 8s x 3"},
		{"grace within the drain", func(c *corev1.Container) { c.Env[1].Value = "40" }, "terminationGracePeriodSeconds 1m20s <= preStop 55s"},
	} {
		d := frontend()
		tt.change(&d.Spec.Template.Spec.Containers[0])
		p := drainProblems(&gkeHealthCheck, d, 30*time.Second)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tt.want) }) {
			t.Errorf("%s: drainProblems = %q, want one containing %q", tt.name, p, tt.want)
		}
	}
}

// checkEKSService checks the annotations that make the AWS Load Balancer
// Controller build an internet-facing NLB with instance targets (without
// the scheme it is internal: reachable from the VPC only).
//
// The NLB also resets the open connections of a target that fails its
// health check (target_health_state.unhealthy.connection_termination,
// on by default): the node of a terminating frontend pod fails it while
// nginx still finishes requests, in preStop and after SIGQUIT. So the
// overlay turns that off and drains instead, for at least the pod's grace
// period, after which the kubelet has stopped nginx anyway.
func checkEKSService(t *testing.T, svc *corev1.Service, frontend *appsv1.Deployment) {
	t.Helper()
	attrs := map[string]string{}
	for _, kv := range strings.Split(svc.Annotations[awsAnnotation+"target-group-attributes"], ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		attrs[k] = v
	}
	if got := attrs["target_health_state.unhealthy.connection_termination.enabled"]; got != "false" {
		t.Errorf("service frontend: target group attribute target_health_state.unhealthy.connection_termination.enabled = %q, want false: the NLB resets the connections of a node whose frontend is draining", got)
	}
	grace := deref64(frontend.Spec.Template.Spec.TerminationGracePeriodSeconds, 30)
	if n, err := strconv.ParseInt(attrs["target_health_state.unhealthy.draining_interval_seconds"], 10, 64); err != nil || n < grace {
		t.Errorf("service frontend: target group attribute target_health_state.unhealthy.draining_interval_seconds = %q, want at least the frontend's grace period, %d s", attrs["target_health_state.unhealthy.draining_interval_seconds"], grace)
	}
	for key, want := range map[string]string{
		"type":                 "external",
		"nlb-target-type":      "instance",
		"scheme":               "internet-facing",
		"healthcheck-protocol": "http", // the controller's docs: not tcp with externalTrafficPolicy Local
		"attributes":           "load_balancing.cross_zone.enabled=true",
	} {
		if got := svc.Annotations[awsAnnotation+key]; got != want {
			t.Errorf("service frontend: annotation %s%s = %q, want %q", awsAnnotation, key, got, want)
		}
	}
}

// checkArmToleration checks that every Deployment may run on GKE's Arm
// nodes, which are tainted kubernetes.io/arch=arm64:NoSchedule.
func checkArmToleration(t *testing.T, objs []object) {
	t.Helper()
	taint := corev1.Taint{Key: "kubernetes.io/arch", Value: "arm64", Effect: corev1.TaintEffectNoSchedule}
	for _, d := range ofType[*appsv1.Deployment](objs) {
		ok := slices.ContainsFunc(d.v.Spec.Template.Spec.Tolerations, func(tol corev1.Toleration) bool {
			return tol.Key == taint.Key && tol.Effect == taint.Effect &&
				(tol.Operator == corev1.TolerationOpExists || tol.Operator == corev1.TolerationOpEqual && tol.Value == taint.Value)
		})
		if !ok {
			t.Errorf("deployment %s does not tolerate %s=%s:%s: it cannot run on Arm node pools", d.v.Name, taint.Key, taint.Value, taint.Effect)
		}
	}
}

// checkTrustedProxies checks auth's TRUSTED_PROXIES.
func checkTrustedProxies(t *testing.T, objs []object, want string) {
	t.Helper()
	for _, p := range podsOf(objs) {
		for _, c := range p.spec.Containers {
			if v, ok := envValue(c, "TRUSTED_PROXIES"); ok && v != want {
				t.Errorf("%v: TRUSTED_PROXIES %s, want %s", p, v, want)
			}
		}
	}
}

// checkOverlayReferences checks that every ConfigMap and Secret a pod
// mounts or reads is in the build (generated), with the keys it names, or
// is one deploy.sh makes (the token keys, users).
func checkOverlayReferences(t *testing.T, objs []object, all []pod) {
	t.Helper()
	keys := map[string][]string{}
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.ConfigMap:
			keys["configmap/"+v.Name] = sortedKeys(v.Data)
		case *corev1.Secret:
			keys["secret/"+v.Name] = sortedKeys(v.Data)
		}
	}
	made := deployScriptCreates(t)
	check := func(p pod, kind, name, key string) {
		t.Helper()
		if byScript, ok := made[kind+"/"+name]; ok && kind == "secret" {
			if _, ok := byScript[key]; key != "" && !ok {
				t.Errorf("%v: secret %s (made by deploy.sh) has no key %s", p, name, key)
			}
			return
		}
		have, ok := keys[kind+"/"+name]
		if !ok {
			t.Errorf("%v: %s %s is not in the build", p, kind, name)
			return
		}
		if key != "" && !slices.Contains(have, key) {
			t.Errorf("%v: %s %s has no key %s (it has %q)", p, kind, name, key, have)
		}
	}
	for _, p := range all {
		for _, v := range p.spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				check(p, "configmap", v.ConfigMap.Name, "")
				for _, it := range v.ConfigMap.Items {
					check(p, "configmap", v.ConfigMap.Name, it.Key)
				}
			case v.Secret != nil:
				check(p, "secret", v.Secret.SecretName, "")
				for _, it := range v.Secret.Items {
					check(p, "secret", v.Secret.SecretName, it.Key)
				}
			}
		}
		for _, c := range p.spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					check(p, "secret", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			}
		}
	}
}
