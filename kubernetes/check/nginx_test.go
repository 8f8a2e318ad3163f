package check

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"example.com/app/internal/edge"
)

// directive is one nginx directive: its name, arguments and block, if any.
type directive struct {
	name  string
	args  []string
	block []directive
}

// parseNginx parses an nginx configuration: enough of the grammar for these
// files (comments, quoted strings, blocks), not a validator.
func parseNginx(src string) ([]directive, error) {
	var tokens []string
	for i := 0; i < len(src); {
		switch c := src[i]; {
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '{' || c == '}' || c == ';':
			tokens = append(tokens, string(c))
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string at byte %d", i)
			}
			tokens = append(tokens, "\x00"+src[i+1:j]) // quoted: never a brace or semicolon
			i = j + 1
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n{};#\"'", rune(src[j])) {
				j++
			}
			tokens = append(tokens, src[i:j])
			i = j
		}
	}
	ds, rest, err := parseBlock(tokens)
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("unexpected %q", rest[0])
	}
	return ds, err
}

func parseBlock(tokens []string) ([]directive, []string, error) {
	var ds []directive
	var cur []string
	for len(tokens) > 0 {
		tok := tokens[0]
		tokens = tokens[1:]
		switch tok {
		case ";":
			if len(cur) == 0 {
				return nil, nil, fmt.Errorf("empty directive")
			}
			ds = append(ds, directive{name: cur[0], args: cur[1:]})
			cur = nil
		case "{":
			block, rest, err := parseBlock(tokens)
			if err != nil {
				return nil, nil, err
			}
			if len(rest) == 0 || rest[0] != "}" {
				return nil, nil, fmt.Errorf("block %v not closed", cur)
			}
			if len(cur) == 0 {
				return nil, nil, fmt.Errorf("block without a name")
			}
			ds = append(ds, directive{name: cur[0], args: cur[1:], block: block})
			cur = nil
			tokens = rest[1:]
		case "}":
			return ds, append([]string{tok}, tokens...), nil
		default:
			cur = append(cur, strings.TrimPrefix(tok, "\x00"))
		}
	}
	if len(cur) > 0 {
		return nil, nil, fmt.Errorf("directive %v without ;", cur)
	}
	return ds, nil, nil
}

// walk calls f for every directive, depth first.
func walk(ds []directive, f func(directive)) {
	for _, d := range ds {
		f(d)
		walk(d.block, f)
	}
}

func find(ds []directive, name string) []directive {
	var out []directive
	for _, d := range ds {
		if d.name == name {
			out = append(out, d)
		}
	}
	return out
}

// nginxConfig is the configuration one nginx container runs: its files from
// the ConfigMaps deploy.sh makes, rendered as the image renders templates.
type nginxConfig struct {
	source string // the file under nginx/
	conf   []directive
}

// nginxConfigOf loads and renders the config of an nginx container.
func nginxConfigOf(t *testing.T, p pod, c corev1.Container, made created) []nginxConfig {
	t.Helper()
	var out []nginxConfig
	for _, dir := range []string{"/etc/nginx/templates", "/etc/nginx/conf.d"} {
		v, ok := mountOf(p, c, dir)
		if !ok || v.ConfigMap == nil {
			continue
		}
		// Mounted by key, a ConfigMap made with another key name fails
		// the mount with an event naming the key; mounted whole, nginx
		// would start without its server and never become ready.
		if len(v.ConfigMap.Items) == 0 {
			t.Errorf("%v: container %s: ConfigMap %s at %s without items: mount the config by its key", p, c.Name, v.ConfigMap.Name, dir)
		}
		keys := made["configmap/"+v.ConfigMap.Name]
		for key, src := range keys {
			if strings.HasSuffix(key, " size") {
				continue
			}
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatalf("%v: %v", p, err)
			}
			text := string(data)
			if dir == "/etc/nginx/templates" {
				text = renderTemplate(t, p, c, key, text)
				// The image writes the rendered file to conf.d, which must
				// be writable (the root filesystem is read-only) and hide
				// the image's default.conf.
				if cv, ok := mountOf(p, c, "/etc/nginx/conf.d"); !ok || cv.EmptyDir == nil {
					t.Errorf("%v: container %s: templates without an emptyDir at /etc/nginx/conf.d", p, c.Name)
				}
			} else if !strings.HasSuffix(key, ".conf") {
				t.Errorf("%v: key %s in conf.d: nginx includes only *.conf", p, key)
			}
			conf, err := parseNginx(text)
			if err != nil {
				t.Fatalf("%v: parsing %s: %v", p, src, err)
			}
			out = append(out, nginxConfig{source: src, conf: conf})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%v: container %s: no nginx config from a ConfigMap at /etc/nginx/templates or /etc/nginx/conf.d", p, c.Name)
	}
	return out
}

// renderTemplate renders a template as the nginx image's
// 20-envsubst-on-templates.sh does, with the same code as the tests, `make
// up` and the test cluster's image (internal/edge): the container's
// variables that NGINX_ENVSUBST_FILTER matches. Every variable the template
// uses must be among them, and EDGE_HTTP2 must suit the image's nginx.
func renderTemplate(t *testing.T, p pod, c corev1.Container, key, text string) string {
	t.Helper()
	if !strings.HasSuffix(key, ".template") {
		t.Errorf("%v: key %s in /etc/nginx/templates: the image renders only *.template", p, key)
	}
	filter, _ := envValue(c, "NGINX_ENVSUBST_FILTER")
	if filter != edge.EnvFilter {
		t.Errorf("%v: container %s: NGINX_ENVSUBST_FILTER %q, want %q: the templates' variables and no other", p, c.Name, filter, edge.EnvFilter)
	}
	var environ []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			environ = append(environ, e.Name+"="+e.Value)
		}
	}
	vars, err := edge.FilterEnv(environ, filter)
	if err != nil {
		t.Fatalf("%v: container %s: %v", p, c.Name, err)
	}
	for _, name := range edge.EnvReferences(text) {
		if _, ok := vars[name]; !ok {
			t.Errorf("%v: container %s: the template uses ${%s}, which is not set or not matched by NGINX_ENVSUBST_FILTER", p, c.Name, name)
		}
	}
	checkHTTP2(t, p, c, vars[edge.VarHTTP2])
	return edge.Render(text, vars)
}

// checkHTTP2 checks the container's EDGE_HTTP2 against the nginx version of
// its image's tag: nginx 1.25.1 and later warn about the other form, and
// earlier ones reject it.
func checkHTTP2(t *testing.T, p pod, c corev1.Container, got string) {
	t.Helper()
	_, tag := splitImage(c.Image)
	v, err := edge.ParseVersion(tag)
	if err != nil {
		t.Errorf("%v: container %s: image %s: want a tag naming the nginx version (%v)", p, c.Name, c.Image, err)
		return
	}
	if want := edge.HTTP2For(v); got != string(want) {
		t.Errorf("%v: container %s: EDGE_HTTP2 %q, want %q for nginx %s (image %s)", p, c.Name, got, want, v, c.Image)
	}
}

func isNginx(c corev1.Container) bool {
	repo, _ := splitImage(c.Image)
	return strings.Contains(path.Base(repo), "nginx")
}

// TestNginx checks each nginx container against its own config: upstreams
// are the Services (names and ports) or the pod's app container, it listens
// on its declared ports, probes ask what it serves, the certificate is where
// the tls-certs Secret is mounted, and the grace period covers the preStop
// sleep plus the longest request nginx waits for.
func TestNginx(t *testing.T) {
	made := deployScriptCreates(t)
	services := map[string][]*corev1.Service{}
	for _, s := range ofType[*corev1.Service](objects(t)) {
		services[s.v.Name] = append(services[s.v.Name], s.v)
	}
	n := 0
	for _, p := range pods(t) {
		for _, c := range p.spec.Containers {
			if !isNginx(c) {
				continue
			}
			n++
			t.Run(p.file+"/"+c.Name, func(t *testing.T) {
				var conf []directive
				for _, nc := range nginxConfigOf(t, p, c, made) {
					conf = append(conf, nc.conf...)
				}
				// nginx-unprivileged keeps its pid and temp files in /tmp;
				// the root filesystem is read-only.
				for _, dir := range []string{"/tmp", "/var/cache/nginx"} {
					if v, ok := mountOf(p, c, dir); !ok || v.EmptyDir == nil {
						t.Errorf("no emptyDir at %s: nginx cannot write there", dir)
					}
				}
				checkUpstreams(t, p, conf, services)
				listens := checkListens(t, c, conf)
				checkNginxProbes(t, c, listens)
				checkTLSFiles(t, p, c, conf, made)
				checkNginxShutdown(t, p, c, conf)
			})
		}
	}
	if n < 2 {
		t.Errorf("found %d nginx containers, want the frontend's and the secure monolith's", n)
	}
}

// TestNginxImage checks that every nginx container runs the same image, and
// that the test cluster builds its stand-in under that name.
func TestNginxImage(t *testing.T) {
	images := map[string]bool{}
	for _, p := range pods(t) {
		for _, c := range p.spec.Containers {
			if isNginx(c) {
				images[c.Image] = true
			}
		}
	}
	if len(images) != 1 {
		t.Fatalf("nginx images %v, want one: move them together", sortedKeys(images))
	}
	image := sortedKeys(images)[0]
	script, err := os.ReadFile(filepath.Join(repoDir, "test", "cluster", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "NGINX_IMAGE:-docker.io/" + image + "}"; !strings.Contains(string(script), want) {
		t.Errorf("test/cluster/cluster.sh has no %q: its stand-in must carry the manifests' image name", want)
	}
}

func checkUpstreams(t *testing.T, p pod, conf []directive, services map[string][]*corev1.Service) {
	t.Helper()
	ups := find(conf, "upstream")
	if len(ups) == 0 {
		t.Fatal("no upstream blocks")
	}
	for _, up := range ups {
		for _, srv := range find(up.block, "server") {
			host, port, err := net.SplitHostPort(srv.args[0])
			if err != nil {
				t.Errorf("upstream %v: server %s: %v", up.args, srv.args[0], err)
				continue
			}
			want := strings.TrimSuffix(up.args[0], "_app") // upstream hello_app -> Service hello
			if host == "127.0.0.1" || host == "localhost" {
				// The app container of the same pod, on its app port.
				found := false
				for _, c := range p.spec.Containers {
					for _, cp := range c.Ports {
						if strconv.Itoa(int(cp.ContainerPort)) == port {
							found = true
							if cp.Name != "http" || c.Name != want {
								t.Errorf("upstream %s: %s is container %s's port %s, want container %s's http", up.args[0], srv.args[0], c.Name, cp.Name, want)
							}
						}
					}
				}
				if !found {
					t.Errorf("upstream %s: no container of the pod listens on %s", up.args[0], srv.args[0])
				}
				continue
			}
			if host != want {
				t.Errorf("upstream %s: server %s, want the Service %s", up.args[0], host, want)
			}
			svcs := services[host]
			if len(svcs) == 0 {
				t.Errorf("upstream %s: no Service named %s", up.args[0], host)
			}
			for _, s := range svcs {
				ok := false
				for _, sp := range s.Spec.Ports {
					if strconv.Itoa(int(sp.Port)) == port {
						ok = true
						if sp.TargetPort.String() != "http" {
							t.Errorf("upstream %s: Service %s port %s goes to %s, want the app port http", up.args[0], host, port, sp.TargetPort.String())
						}
					}
				}
				if !ok {
					t.Errorf("upstream %s: Service %s has no port %s", up.args[0], host, port)
				}
			}
		}
	}
}

// listen is one server block's listening port.
type listen struct {
	port      string
	ssl       bool
	locations []string // exact-match locations: "= /healthz"
}

func checkListens(t *testing.T, c corev1.Container, conf []directive) []listen {
	t.Helper()
	var out []listen
	for _, srv := range find(conf, "server") {
		var locs []string
		for _, l := range find(srv.block, "location") {
			locs = append(locs, strings.Join(l.args, " "))
		}
		for _, l := range find(srv.block, "listen") {
			out = append(out, listen{port: l.args[0], ssl: slices.Contains(l.args, "ssl"), locations: locs})
		}
	}
	for _, l := range out {
		found := false
		for _, cp := range c.Ports {
			found = found || strconv.Itoa(int(cp.ContainerPort)) == l.port
		}
		if !found {
			t.Errorf("nginx listens on %s, which the container does not declare", l.port)
		}
	}
	for _, cp := range c.Ports {
		found := false
		for _, l := range out {
			found = found || strconv.Itoa(int(cp.ContainerPort)) == l.port
		}
		if !found {
			t.Errorf("container port %s (%d): nginx does not listen there", cp.Name, cp.ContainerPort)
		}
		if (cp.Name == "https") != slices.ContainsFunc(out, func(l listen) bool { return l.ssl && l.port == strconv.Itoa(int(cp.ContainerPort)) }) {
			t.Errorf("container port %s (%d): want TLS exactly on the port named https", cp.Name, cp.ContainerPort)
		}
	}
	return out
}

func checkNginxProbes(t *testing.T, c corev1.Container, listens []listen) {
	t.Helper()
	for kind, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			continue
		}
		cp, _, _ := containerPortOf(c, pr.HTTPGet.Port.String())
		served := false
		for _, l := range listens {
			if l.port == strconv.Itoa(int(cp.ContainerPort)) && slices.Contains(l.locations, "= "+pr.HTTPGet.Path) {
				served = true
				if l.ssl != (pr.HTTPGet.Scheme == corev1.URISchemeHTTPS) {
					t.Errorf("%s probe: scheme %q on port %s, which has ssl=%v", kind, pr.HTTPGet.Scheme, l.port, l.ssl)
				}
			}
		}
		if !served {
			t.Errorf("%s probe GET %s on port %s: nginx has no `location = %s` there", kind, pr.HTTPGet.Path, pr.HTTPGet.Port.String(), pr.HTTPGet.Path)
		}
	}
}

func containerPortOf(c corev1.Container, name string) (corev1.ContainerPort, corev1.Container, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p, c, true
		}
	}
	return corev1.ContainerPort{}, c, false
}

func checkTLSFiles(t *testing.T, p pod, c corev1.Container, conf []directive, made created) {
	t.Helper()
	walk(conf, func(d directive) {
		if d.name != "ssl_certificate" && d.name != "ssl_certificate_key" {
			return
		}
		file := d.args[0]
		v, ok := mountOf(p, c, path.Dir(file))
		if !ok || v.Secret == nil {
			t.Errorf("%s %s: no Secret mounted at %s", d.name, file, path.Dir(file))
			return
		}
		if _, ok := made["secret/"+v.Secret.SecretName][path.Base(file)]; !ok {
			t.Errorf("%s %s: Secret %s has no key %s", d.name, file, v.Secret.SecretName, path.Base(file))
		}
	})
}

func checkNginxShutdown(t *testing.T, p pod, c corev1.Container, conf []directive) {
	t.Helper()
	d, err := nginxDrain(c)
	if err != nil {
		t.Fatal(err)
	}
	if d.serve < 5*time.Second {
		t.Errorf("preStop serves %v: want at least 5s for endpoints and load balancers to drop the pod", d.serve)
	}
	if d.file != "" {
		if v, ok := mountOf(p, c, path.Dir(d.file)); !ok || v.EmptyDir == nil {
			t.Errorf("EDGE_DRAIN_FILE %s: no emptyDir at %s for the preStop to write it", d.file, path.Dir(d.file))
		}
	}
	longest := longestProxyRead(t, conf)
	grace := time.Duration(deref64(p.spec.TerminationGracePeriodSeconds, 30)) * time.Second
	if grace <= d.total()+longest {
		t.Errorf("terminationGracePeriodSeconds %v, want more than the preStop %v + proxy_read_timeout %v", grace, d.total(), longest)
	}
}

// drainScript is the frontend's preStop (deployments/frontend.yaml, whose
// shutdown notes say why): serve, then fail the readiness probe while
// still accepting connections, then let the stop signal stop nginx.
const drainScript = `sleep "$DRAIN_SERVE_SECONDS" && touch "$EDGE_DRAIN_FILE" && sleep "$DRAIN_UNREADY_SECONDS"`

// drain is how an nginx container's preStop holds nginx up before its stop
// signal: it serves as before for serve, then (with a drain file) fails its
// readiness probe for unready while still accepting connections.
type drain struct {
	serve, unready time.Duration
	file           string // EDGE_DRAIN_FILE, "" for a plain sleep
}

func (d drain) total() time.Duration { return d.serve + d.unready }

// nginxDrain reads c's preStop: a sleep (the secure monolith's sidecar), or
// drainScript with the seconds of c's env (the frontend's). The unready
// phase must outlast the readiness probe's failures, which must come from
// the drain file (/healthz), plus drainMargin for the endpoints and
// kube-proxy to drop the pod.
func nginxDrain(c corev1.Container) (drain, error) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return drain{}, fmt.Errorf("container %s: no preStop: nginx would stop while endpoints still send it traffic", c.Name)
	}
	h := c.Lifecycle.PreStop
	if h.Sleep != nil {
		return drain{serve: time.Duration(h.Sleep.Seconds) * time.Second}, nil
	}
	if h.Exec == nil || !slices.Equal(h.Exec.Command, []string{"/bin/sh", "-c", drainScript}) {
		return drain{}, fmt.Errorf("container %s: preStop %v: want a sleep, or exec /bin/sh -c %q", c.Name, h, drainScript)
	}
	var d drain
	var ok bool
	if d.file, ok = envValue(c, edge.VarDrainFile); !ok || !path.IsAbs(d.file) {
		return drain{}, fmt.Errorf("container %s: %s %q: want the absolute path the preStop creates", c.Name, edge.VarDrainFile, d.file)
	}
	for _, v := range []struct {
		name string
		to   *time.Duration
	}{{"DRAIN_SERVE_SECONDS", &d.serve}, {"DRAIN_UNREADY_SECONDS", &d.unready}} {
		s, _ := envValue(c, v.name)
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return drain{}, fmt.Errorf("container %s: %s %q: want whole seconds, at least 1", c.Name, v.name, s)
		}
		*v.to = time.Duration(n) * time.Second
	}
	r := c.ReadinessProbe
	if r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/healthz" || r.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		return drain{}, fmt.Errorf("container %s: the readiness probe is not GET /healthz over HTTPS: the drain file would not make it fail (the plain listener's /healthz ignores it)", c.Name)
	}
	period, threshold := r.PeriodSeconds, r.FailureThreshold
	if period == 0 {
		period = 10 // Kubernetes' defaults
	}
	if threshold == 0 {
		threshold = 3
	}
	failing := time.Duration(period*threshold) * time.Second
	if d.unready < failing+drainMargin {
		return drain{}, fmt.Errorf("container %s: DRAIN_UNREADY_SECONDS %v < readiness %v (period x failureThreshold) + %v margin: nginx stops listening while kube-proxy still chooses it",
			c.Name, d.unready, failing, drainMargin)
	}
	return d, nil
}

// longestProxyRead is the longest proxy_read_timeout in conf: the longest
// an in-flight request keeps nginx from exiting.
func longestProxyRead(t *testing.T, conf []directive) time.Duration {
	t.Helper()
	var longest time.Duration
	walk(conf, func(d directive) {
		if d.name == "proxy_read_timeout" {
			v, err := time.ParseDuration(d.args[0])
			if err != nil {
				t.Errorf("proxy_read_timeout %s: %v", d.args[0], err)
			}
			longest = max(longest, v)
		}
	})
	if longest == 0 {
		longest = 60 * time.Second // nginx's default
	}
	return longest
}

// TestParseNginx checks the small parser on the constructs the configs use.
func TestParseNginx(t *testing.T) {
	conf, err := parseNginx(`# comment
log_format j escape=json '{"a":"$b"}'; # braces in quotes
upstream a_app { server a:80 max_fails=0; }
server { listen 8443 ssl http2; location = /healthz { return 200 "ok\n"; } }
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(conf) != 3 || conf[0].args[2] != `{"a":"$b"}` || find(conf, "server")[0].block[1].args[1] != "/healthz" {
		t.Errorf("parseNginx(...) = %+v", conf)
	}
	if _, err := parseNginx("server { listen 80;"); err == nil {
		t.Error("parseNginx(an unclosed block) error = nil, want an error")
	}
}
