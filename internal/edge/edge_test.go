package edge_test

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"example.com/app/internal/edge"
)

func TestRender(t *testing.T) {
	vars := map[string]string{"AUTH_UPSTREAM": "127.0.0.1:1", "HELLO_UPSTREAM": "127.0.0.1:2"}
	tests := []struct {
		in, want string
	}{
		{"server ${AUTH_UPSTREAM} max_fails=0;", "server 127.0.0.1:1 max_fails=0;"},
		{"server $HELLO_UPSTREAM;", "server 127.0.0.1:2;"},
		{"$AUTH_UPSTREAM$HELLO_UPSTREAM", "127.0.0.1:1127.0.0.1:2"},
		{"return 308 https://$host$request_uri;", "return 308 https://$host$request_uri;"},
		{"${OTHER} $OTHER $HOSTNAME", "${OTHER} $OTHER $HOSTNAME"}, // not set: envsubst leaves them
		{"$AUTH_UPSTREAMS ${AUTH_UPSTREAM", "$AUTH_UPSTREAMS ${AUTH_UPSTREAM"},
		{"'{\"error\":\"$edge_error\"}' $ ${ $1 $$", "'{\"error\":\"$edge_error\"}' $ ${ $1 $$"},
	}
	for _, tt := range tests {
		if got := edge.Render(tt.in, vars); got != tt.want {
			t.Errorf("Render(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestTemplateVariables checks that the templates refer to no environment
// variable but their own: the official image substitutes every variable set
// in the container that NGINX_ENVSUBST_FILTER matches, so any other would
// change under it, or stay unrendered.
func TestTemplateVariables(t *testing.T) {
	tests := []struct {
		name string
		want []string
	}{
		{"frontend.conf.template", []string{edge.VarAuthServers, edge.VarDrainFile, edge.VarHelloServers, edge.VarHTTP2, edge.VarHTTPSListen, edge.VarHTTPListen, edge.VarRedirectPort, edge.VarTLSDir, edge.VarUIDir}},
		{"proxy.conf.template", []string{edge.VarHTTP2, edge.VarHTTPSListen, edge.VarMonolithServers, edge.VarTLSDir}},
	}
	filter := regexp.MustCompile(edge.EnvFilter)
	for _, tt := range tests {
		got := edge.EnvReferences(readConfig(t, tt.name))
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s refers to environment variables %q, want %q", tt.name, got, tt.want)
		}
		for _, name := range got {
			if !filter.MatchString(name) {
				t.Errorf("%s refers to %s, which NGINX_ENVSUBST_FILTER %s does not let through", tt.name, name, edge.EnvFilter)
			}
		}
	}
}

// kubernetes are the parameters as the manifests set them.
var kubernetes = edge.Params{
	HTTPSListen: "8443", HTTPListen: "8080", TLSDir: "/etc/tls", HTTP2: edge.HTTP2Directive,
	UIDir: "/usr/share/nginx/html/ui", DrainFile: "/tmp/draining", Auth: []string{"auth:80"}, Hello: []string{"hello:80"},
}

func TestParamsRender(t *testing.T) {
	tmpl := readConfig(t, "frontend.conf.template")
	got, err := kubernetes.Render(tmpl)
	if err != nil {
		t.Fatalf("Render(frontend.conf.template) error = %v", err)
	}
	for _, want := range []string{
		"listen 8443 ssl default_server; http2 on;",
		"listen 8080 default_server;",
		"ssl_certificate     /etc/tls/cert.pem;",
		"ssl_certificate_key /etc/tls/key.pem;",
		"\n    server auth:80 max_fails=0;\n",
		"upstream hello_app {\n    server hello:80 max_fails=0;\n",
		"return 308 https://$edge_redirect_host$request_uri;",
		"alias /usr/share/nginx/html/ui/;",
		"if (-f /tmp/draining) {",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Render(frontend.conf.template) for Kubernetes has no %q", want)
		}
	}

	local := edge.Params{
		HTTPSListen: "127.0.0.1:4443", HTTPListen: "127.0.0.1:4080", TLSDir: "/tmp/x/tls/", HTTP2: edge.HTTP2Parameter,
		RedirectPort: 4443, UIDir: "/src/frontend/", DrainFile: "/tmp/x/draining", Auth: []string{"127.0.0.1:3"}, Hello: []string{"127.0.0.1:1", "127.0.0.1:2"},
	}
	got, err = local.Render(tmpl)
	if err != nil {
		t.Fatalf("Render(frontend.conf.template) error = %v", err)
	}
	for _, want := range []string{
		"listen 127.0.0.1:4443 ssl default_server http2;",
		"listen 127.0.0.1:4080 default_server;",
		"ssl_certificate     /tmp/x/tls/cert.pem;",
		"upstream hello_app {\n    server 127.0.0.1:1 max_fails=0;\n    server 127.0.0.1:2 max_fails=0;\n",
		"server 127.0.0.1:3 max_fails=0;",
		"return 308 https://$edge_redirect_host:4443$request_uri;",
		"alias /src/frontend/;",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Render(frontend.conf.template) for %+v has no %q", local, want)
		}
	}
	if refs := edge.EnvReferences(got); len(refs) > 0 {
		t.Errorf("Render(frontend.conf.template) left %q", refs)
	}
}

func TestParamsRenderErrors(t *testing.T) {
	frontend, proxy := readConfig(t, "frontend.conf.template"), readConfig(t, "proxy.conf.template")
	noHello := kubernetes
	noHello.Hello = nil
	noHTTP2 := kubernetes
	noHTTP2.HTTP2 = ""
	tests := []struct {
		name, tmpl string
		p          edge.Params
	}{
		{"no hello servers", frontend, noHello},
		{"no http2 form", frontend, noHTTP2},
		{"no monolith servers", proxy, kubernetes},
		{"another variable", "listen ${EDGE_HTTPS_LISTEN};\nserver_name ${HOSTNAME};", kubernetes},
	}
	for _, tt := range tests {
		if _, err := tt.p.Render(tt.tmpl); err == nil {
			t.Errorf("Render(%s) error = nil, want an error", tt.name)
		}
	}
	monolith := kubernetes
	monolith.Monolith = []string{"127.0.0.1:8080"}
	if _, err := monolith.Render(proxy); err != nil {
		t.Errorf("Render(proxy.conf.template) error = %v", err)
	}
}

func TestVersions(t *testing.T) {
	tests := []struct {
		in    string
		want  edge.Version
		http2 edge.HTTP2
	}{
		{"1.22.1", edge.Version{1, 22, 1}, edge.HTTP2Parameter},
		{"1.25.0", edge.Version{1, 25, 0}, edge.HTTP2Parameter},
		{"1.25.1", edge.Version{1, 25, 1}, edge.HTTP2Directive},
		{"1.26.3\n", edge.Version{1, 26, 3}, edge.HTTP2Directive},
		{"1.30.7-alpine", edge.Version{1, 30, 7}, edge.HTTP2Directive},
		{"2.0.0", edge.Version{2, 0, 0}, edge.HTTP2Directive},
	}
	for _, tt := range tests {
		got, err := edge.ParseVersion(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if h := edge.HTTP2For(got); h != tt.http2 {
			t.Errorf("HTTP2For(%v) = %q, want %q", got, h, tt.http2)
		}
	}
	for _, bad := range []string{"", "alpine", "1.30-alpine", "latest", "v1.2.3"} {
		if v, err := edge.ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", bad, v)
		}
	}
}

func TestFilterEnv(t *testing.T) {
	environ := []string{"EDGE_TLS_DIR=/etc/tls", "EDGE_REDIRECT_PORT=", "HOSTNAME=pod", "NOT_EDGE_X=1", "EDGE_HTTP2=; http2 on"}
	got, err := edge.FilterEnv(environ, edge.EnvFilter)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"EDGE_TLS_DIR": "/etc/tls", "EDGE_REDIRECT_PORT": "", "EDGE_HTTP2": "; http2 on"}
	if !maps.Equal(got, want) {
		t.Errorf("FilterEnv(%q, %q) = %q, want %q", environ, edge.EnvFilter, got, want)
	}
	if all, _ := edge.FilterEnv(environ, ""); len(all) != len(environ) {
		t.Errorf("FilterEnv with an empty filter = %q, want every variable, as the image's entrypoint", all)
	}
	if _, err := edge.FilterEnv(environ, "("); err == nil {
		t.Error("FilterEnv with filter \"(\" error = nil, want an error")
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "nginx-x")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx-y"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "NGINX_BIN" {
				return v
			}
			return ""
		}
	}
	if got, err := edge.Find(env(bin)); err != nil || got != bin {
		t.Errorf("Find with NGINX_BIN=%s = %q, %v; want it", bin, got, err)
	}
	for _, bad := range []string{filepath.Join(dir, "missing"), dir, filepath.Join(dir, "nginx-y")} { // missing, a directory, not executable
		if got, err := edge.Find(env(bad)); err == nil {
			t.Errorf("Find with NGINX_BIN=%s = %q, want an error", bad, got)
		}
	}
}

func readConfig(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../nginx/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutComments drops the comment lines of an nginx config.
func withoutComments(conf string) string {
	var b strings.Builder
	for line := range strings.Lines(conf) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}
