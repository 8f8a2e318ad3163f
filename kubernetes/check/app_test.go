package check

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"example.com/app/internal/config"
	"example.com/app/internal/health"
)

// makefile returns the Makefile's default registry (REGISTRY ?= ...) and its
// BINARIES: the images are $(REGISTRY)/<binary>:$(VERSION).
func makefile(t *testing.T) (registry string, binaries []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir, "Makefile"))
	if err != nil {
		t.Fatalf("reading the Makefile: %v", err)
	}
	text := string(data)
	r := regexp.MustCompile(`(?m)^REGISTRY\s*\?=\s*(\S+)\s*$`).FindStringSubmatch(text)
	b := regexp.MustCompile(`(?m)^BINARIES\s*:?=\s*(.+?)\s*$`).FindStringSubmatch(text)
	if r == nil || b == nil {
		t.Fatalf("Makefile: want lines `REGISTRY ?= <registry>` and `BINARIES := <names>`")
	}
	return r[1], strings.Fields(b[1])
}

// splitImage splits registry/name:tag.
func splitImage(image string) (repo, tag string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, ""
	}
	return image[:i], image[i+1:]
}

// appContainer is a container running one of the Makefile's binaries.
type appContainer struct {
	pod     pod
	c       corev1.Container
	binary  string
	version string // the image tag
}

func appContainers(t *testing.T) []appContainer {
	t.Helper()
	registry, binaries := makefile(t)
	var out []appContainer
	for _, p := range pods(t) {
		for _, c := range p.spec.Containers {
			repo, tag := splitImage(c.Image)
			if b, ok := strings.CutPrefix(repo, registry+"/"); ok && slices.Contains(binaries, b) {
				out = append(out, appContainer{pod: p, c: c, binary: b, version: tag})
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no container runs an image %s/<one of %v>", registry, binaries)
	}
	return out
}

// thirdPartyImages are the images not built here, pinned by version.
var thirdPartyImages = map[string]*regexp.Regexp{
	"nginxinc/nginx-unprivileged": regexp.MustCompile(`^\d+\.\d+\.\d+-alpine$`),
}

// TestImages checks that every image is one the Makefile builds, under its
// default registry, tagged with a version that the pod's labels repeat, or
// a pinned third-party image.
func TestImages(t *testing.T) {
	registry, binaries := makefile(t)
	used := map[string]bool{}
	for _, p := range pods(t) {
		for _, c := range p.spec.Containers {
			repo, tag := splitImage(c.Image)
			if re, ok := thirdPartyImages[repo]; ok {
				if !re.MatchString(tag) {
					t.Errorf("%v: image %s: want a pinned version tag matching %s", p, c.Image, re)
				}
				continue
			}
			b, ok := strings.CutPrefix(repo, registry+"/")
			if !ok || !slices.Contains(binaries, b) {
				t.Errorf("%v: image %s: want %s/<one of the Makefile's BINARIES %v>:<version>", p, c.Image, registry, binaries)
				continue
			}
			used[b] = true
			if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(tag) {
				t.Errorf("%v: image %s: want a version tag", p, c.Image)
			}
			if p.labels["version"] != tag {
				t.Errorf("%v: image %s but label version=%s", p, c.Image, p.labels["version"])
			}
		}
	}
	for _, b := range binaries {
		if !used[b] {
			t.Errorf("no manifest runs the Makefile's binary %s", b)
		}
	}
}

// TestAppSettings runs each app container's environment through the
// services' own configuration parser, and checks ports, probes and shutdown
// timing against the values the code uses.
func TestAppSettings(t *testing.T) {
	for _, ac := range appContainers(t) {
		t.Run(ac.pod.file+"/"+ac.c.Name, func(t *testing.T) {
			c := ac.c
			cfg := parseConfig(t, c, nil)
			if cfg.Dev {
				t.Error("dev mode is on")
			}
			for _, tt := range []struct{ port, addr string }{{"http", cfg.HTTPAddr}, {"health", cfg.HealthAddr}} {
				_, listen, err := net.SplitHostPort(tt.addr)
				if err != nil {
					t.Fatalf("config %s address %q: %v", tt.port, tt.addr, err)
				}
				port, _, ok := containerPort(ac.pod, tt.port)
				if !ok || listen != strconv.Itoa(int(port.ContainerPort)) {
					t.Errorf("port %s is %d, but the service listens on %s", tt.port, port.ContainerPort, tt.addr)
				}
			}
			// Probe paths are the ops server's routes.
			if !noProbesByDesign[ac.pod.file] {
				for _, tt := range []struct {
					kind string
					pr   *corev1.Probe
					path string
				}{{"readiness", c.ReadinessProbe, health.ReadinessPath}, {"liveness", c.LivenessProbe, health.LivenessPath}} {
					if tt.pr == nil || tt.pr.HTTPGet == nil {
						t.Errorf("%s probe: want an httpGet", tt.kind)
						continue
					}
					if g := tt.pr.HTTPGet; g.Path != tt.path || g.Port.String() != "health" {
						t.Errorf("%s probe GET %s on port %s, want %s on port health", tt.kind, g.Path, g.Port.String(), tt.path)
					}
				}
			}
			// Shutdown: the drain is set, long enough for endpoints to
			// update, and the kubelet waits for drain plus shutdown.
			for _, name := range []string{"SHUTDOWN_DRAIN", "SHUTDOWN_TIMEOUT"} {
				if _, ok := envValue(c, name); !ok {
					t.Errorf("env %s not set: say it here rather than rely on the default", name)
				}
			}
			if cfg.ShutdownDrain < 5*time.Second {
				t.Errorf("SHUTDOWN_DRAIN %v: want at least 5s for endpoints and load balancers to drop the pod", cfg.ShutdownDrain)
			}
			// Even if only the readiness probe took the pod out of the
			// endpoints, that would happen within the drain.
			if rp := c.ReadinessProbe; rp != nil {
				if byProbe := time.Duration(rp.PeriodSeconds*rp.FailureThreshold) * time.Second; byProbe > cfg.ShutdownDrain {
					t.Errorf("readiness probe fails a draining pod after %v, longer than SHUTDOWN_DRAIN %v", byProbe, cfg.ShutdownDrain)
				}
			}
			grace := time.Duration(deref64(ac.pod.spec.TerminationGracePeriodSeconds, 30)) * time.Second
			if grace <= cfg.ShutdownDrain+cfg.ShutdownTimeout {
				t.Errorf("terminationGracePeriodSeconds %v, want more than SHUTDOWN_DRAIN %v + SHUTDOWN_TIMEOUT %v", grace, cfg.ShutdownDrain, cfg.ShutdownTimeout)
			}
			if len(cfg.TrustedProxies) == 0 {
				t.Error("no trusted proxies")
			}
		})
	}
}

// TestTutorialFault checks that the broken release of docs/tutorial.md
// (kubectl set env ... FAULT=...) is one the services accept.
func TestTutorialFault(t *testing.T) {
	m := regexp.MustCompile(`kubectl set env deployment/(\S+) FAULT=(\S+)`).FindStringSubmatch(readTutorial(t))
	if m == nil {
		t.Fatal("docs/tutorial.md: no `kubectl set env deployment/NAME FAULT=...`")
	}
	for _, ac := range appContainers(t) {
		if ac.pod.owner == "Deployment/"+m[1] {
			cfg := parseConfig(t, ac.c, map[string]string{"FAULT": m[2]})
			if cfg.Fault == (config.Config{}).Fault {
				t.Errorf("FAULT=%s parsed as no fault", m[2])
			}
			return
		}
	}
	t.Errorf("docs/tutorial.md sets FAULT on deployment/%s, which runs no app container", m[1])
}

// parseConfig runs config.Parse on a container's environment plus extra.
// Values from Secrets are stand-ins of the right size.
func parseConfig(t *testing.T, c corev1.Container, extra map[string]string) *config.Config {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = strings.Repeat("k", 64) // deploy.sh makes 64 bytes
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := config.Parse([]string{c.Name}, func(k string) string { return env[k] }, io.Discard, config.Login|config.DevMode)
	if err != nil {
		t.Fatalf("config.Parse with the container's environment: %v", err)
	}
	return cfg
}

func deref64(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// TestTutorialOpsPaths checks that the tutorial's requests to the ops port
// (8081, port-forwarded to 10081) are routes the ops server serves.
func TestTutorialOpsPaths(t *testing.T) {
	routes := []string{health.LivenessPath, health.ReadinessPath, health.LivenessTogglePath, health.ReadinessTogglePath, health.MetricsPath}
	re := regexp.MustCompile(`http://127\.0\.0\.1:(?:8081|10081)(/\S*)`)
	n := 0
	for _, cmd := range commands(readTutorial(t)) {
		for _, m := range re.FindAllStringSubmatch(cmd, -1) {
			n++
			if !slices.Contains(routes, m[1]) {
				t.Errorf("docs/tutorial.md: %s: %s is not an ops route (%q)", cmd, m[1], routes)
			}
		}
	}
	if n == 0 {
		t.Error("docs/tutorial.md: no requests to the ops port: the probes lesson is missing")
	}
}
