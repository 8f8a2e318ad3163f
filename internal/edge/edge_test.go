package edge_test

import (
	"os"
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

// TestTemplateVariables checks that the template refers to no environment
// variable but its own: the official image substitutes every variable set in
// the container, so any other, such as $HOSTNAME, would change under it.
func TestTemplateVariables(t *testing.T) {
	tmpl := readConfig(t, "frontend.conf.template")
	got := edge.EnvReferences(tmpl)
	slices.Sort(got)
	if want := []string{edge.AuthUpstream, edge.HelloUpstream}; !slices.Equal(got, want) {
		t.Errorf("frontend.conf.template refers to environment variables %q, want %q", got, want)
	}
	if refs := edge.EnvReferences(readConfig(t, "proxy.conf")); len(refs) > 0 {
		t.Errorf("proxy.conf refers to environment variables %q, want none: it is not a template", refs)
	}
	rendered := edge.Render(tmpl, edge.Defaults)
	for _, want := range []string{"server auth:80 ", "server hello:80 "} {
		if !strings.Contains(rendered, want) {
			t.Errorf("frontend.conf.template rendered with Defaults has no %q", want)
		}
	}
}

func TestRelocate(t *testing.T) {
	conf := edge.Render(readConfig(t, "frontend.conf.template"), edge.Defaults)
	m := edge.Mapping{
		HTTPS:     "127.0.0.1:4443",
		HTTP:      "127.0.0.1:4080",
		CertDir:   "/tmp/x/tls/",
		Upstreams: map[string][]string{"hello:80": {"127.0.0.1:1", "127.0.0.1:2"}, "auth:80": {"127.0.0.1:3"}},
	}
	got, err := edge.Relocate(conf, m)
	if err != nil {
		t.Fatalf("Relocate(frontend.conf) error = %v", err)
	}
	for _, want := range []string{
		"listen 127.0.0.1:4443 ssl http2",
		"listen 127.0.0.1:4080 ",
		"ssl_certificate     /tmp/x/tls/cert.pem;",
		"ssl_certificate_key /tmp/x/tls/key.pem;",
		"server 127.0.0.1:1 max_fails=0; # see auth_app\n    server 127.0.0.1:2 max_fails=0; # see auth_app\n",
		"server 127.0.0.1:3 max_fails=0;",
		"return 308 https://$host$request_uri;",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Relocate(frontend.conf) has no %q", want)
		}
	}
	directives := withoutComments(got)
	for _, gone := range []string{"/etc/tls", "hello:80", "auth:80", "listen 8080", "listen 8443"} {
		if strings.Contains(directives, gone) {
			t.Errorf("Relocate(frontend.conf) still has %q", gone)
		}
	}

	m.RedirectPort = 4443
	got, err = edge.Relocate(conf, m)
	if err != nil {
		t.Fatalf("Relocate(frontend.conf, RedirectPort) error = %v", err)
	}
	if want := "return 308 https://$host:4443$request_uri;"; !strings.Contains(got, want) {
		t.Errorf("Relocate(frontend.conf, RedirectPort 4443) has no %q", want)
	}
}

func TestRelocateErrors(t *testing.T) {
	frontend := edge.Render(readConfig(t, "frontend.conf.template"), edge.Defaults)
	proxy := readConfig(t, "proxy.conf")
	ok := edge.Mapping{HTTPS: "127.0.0.1:4443", HTTP: "127.0.0.1:4080", CertDir: "/tls"}
	tests := []struct {
		name string
		conf string
		m    edge.Mapping
	}{
		{"redirect listener left on 8080", frontend, edge.Mapping{HTTPS: ok.HTTPS, CertDir: ok.CertDir}},
		{"not loopback", frontend, edge.Mapping{HTTPS: "0.0.0.0:4443", HTTP: ok.HTTP, CertDir: ok.CertDir}},
		{"no host", frontend, edge.Mapping{HTTPS: "4443", HTTP: ok.HTTP, CertDir: ok.CertDir}},
		{"no such upstream", frontend, edge.Mapping{HTTPS: ok.HTTPS, HTTP: ok.HTTP, CertDir: ok.CertDir, Upstreams: map[string][]string{"monolith:80": {"127.0.0.1:1"}}}},
		{"upstream with no address", frontend, edge.Mapping{HTTPS: ok.HTTPS, HTTP: ok.HTTP, CertDir: ok.CertDir, Upstreams: map[string][]string{"hello:80": nil}}},
		{"no redirect listener", proxy, ok},
		{"no redirect", proxy, edge.Mapping{HTTPS: ok.HTTPS, CertDir: ok.CertDir, RedirectPort: 8443}},
	}
	for _, tt := range tests {
		if _, err := edge.Relocate(tt.conf, tt.m); err == nil {
			t.Errorf("Relocate(%s) error = nil, want an error", tt.name)
		}
	}
	if _, err := edge.Relocate(proxy, edge.Mapping{HTTPS: ok.HTTPS, CertDir: ok.CertDir, Upstreams: map[string][]string{"127.0.0.1:8080": {"127.0.0.1:1"}}}); err != nil {
		t.Errorf("Relocate(proxy.conf) error = %v", err)
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
