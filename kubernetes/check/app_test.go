package check

import (
	"fmt"
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
	"example.com/app/internal/token"
	"example.com/app/internal/user"
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
			cfg := parseConfig(t, ac, nil)
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
			cfg := parseConfig(t, ac, map[string]string{"FAULT": m[2]})
			if cfg.Fault == (config.Config{}).Fault {
				t.Errorf("FAULT=%s parsed as no fault", m[2])
			}
			return
		}
	}
	t.Errorf("docs/tutorial.md sets FAULT on deployment/%s, which runs no app container", m[1])
}

// serviceNeeds is what each binary asks config.Parse for (the Needs in
// auth/main.go, hello/main.go, monolith/main.go): parsed with another's,
// hello would be asked for a private key, or a private key on hello would
// pass unnoticed.
var serviceNeeds = map[string]config.Needs{
	"auth":     config.Login,
	"hello":    0,
	"monolith": config.Login | config.DevMode,
}

// keyFiles are the settings that name a file, the Secret that must hold
// it, and a stand-in of the right kind.
var keyFiles = map[string]struct {
	secret  string
	content func(t *testing.T) []byte
}{
	"JWT_PRIVATE_KEY_FILE": {"jwt-signing-key", func(t *testing.T) []byte {
		b, err := token.MarshalPrivateKey(standInKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}},
	"JWT_PUBLIC_KEYS_FILE": {"jwt-public-keys", func(t *testing.T) []byte {
		b, err := token.MarshalPublicKeys([]token.Key{standInKey(t).Public()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}},
	"USERS_FILE": {"users", func(t *testing.T) []byte {
		h, err := user.Hash("stand-in password")
		if err != nil {
			t.Fatal(err)
		}
		return []byte("alice:" + h + "\n")
	}},
}

func standInKey(t *testing.T) token.Key {
	t.Helper()
	k, err := token.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// parseConfig runs config.Parse, with the Needs of the container's service,
// on its environment plus extra. A setting naming a key or users file must
// name a file in a directory mount (no subPath: the file would never be
// updated) of the Secret that holds it; a stand-in file takes its place.
func parseConfig(t *testing.T, ac appContainer, extra map[string]string) *config.Config {
	t.Helper()
	c := ac.c
	needs, ok := serviceNeeds[ac.binary]
	if !ok {
		t.Fatalf("no Needs known for binary %s: add it to serviceNeeds", ac.binary)
	}
	dir := t.TempDir()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			t.Errorf("env %s from secret %s: keys come as files (the *_FILE settings), never in the environment", e.Name, e.ValueFrom.SecretKeyRef.Name)
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	for name, f := range keyFiles {
		path, ok := env[name]
		if !ok {
			continue
		}
		secret, err := mountedSecret(ac.pod, c, path)
		if err != nil {
			t.Errorf("env %s=%s: %v", name, path, err)
		} else if secret != f.secret {
			t.Errorf("env %s=%s: a file of secret %s, want secret %s", name, path, secret, f.secret)
		}
		standIn := filepath.Join(dir, name)
		if err := os.WriteFile(standIn, f.content(t), 0o600); err != nil {
			t.Fatal(err)
		}
		env[name] = standIn
	}
	cfg, err := config.Parse([]string{c.Name}, func(k string) string { return env[k] }, io.Discard, needs)
	if err != nil {
		t.Fatalf("config.Parse with the container's environment (as %s): %v", ac.binary, err)
	}
	return cfg
}

// mountedSecret returns the Secret whose directory mount in c holds the
// file path, under its own key name.
func mountedSecret(p pod, c corev1.Container, path string) (string, error) {
	for _, m := range c.VolumeMounts {
		if filepath.Dir(path) != filepath.Clean(m.MountPath) {
			continue
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			return "", fmt.Errorf("mounted with subPath: the file is never updated, so a rotation would not reach it")
		}
		for _, v := range p.spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				return "", fmt.Errorf("volume %s is not a Secret", v.Name)
			}
			if len(v.Secret.Items) > 0 {
				return "", fmt.Errorf("volume %s lists items: mount the whole Secret", v.Name)
			}
			return v.Secret.SecretName, nil
		}
	}
	return "", fmt.Errorf("no volume is mounted at %s", filepath.Dir(path))
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
