package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"example.com/app/internal/testbin"
)

// configMapDir lays out files as a ConfigMap volume does: each a link to
// ..data/NAME, ..data a link to a hidden, timestamped directory.
func configMapDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "..2026_11_30_18_00_00.1")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRun(t *testing.T) {
	templates := configMapDir(t, map[string]string{
		"site.conf.template": "listen ${EDGE_HTTPS_LISTEN} ssl default_server${EDGE_HTTP2};\nreturn 308 https://$host${EDGE_REDIRECT_PORT}$request_uri; # $HOSTNAME ${OTHER}\n",
		"notes.txt":          "not a template",
	})
	out := t.TempDir()
	environ := []string{
		"PATH=" + os.Getenv("PATH"), "HOSTNAME=pod-1", "OTHER=x",
		"EDGE_HTTPS_LISTEN=8443", "EDGE_HTTP2=; http2 on", "EDGE_REDIRECT_PORT=",
		"NGINX_ENVSUBST_FILTER=^EDGE_", "NGINX_ENVSUBST_TEMPLATE_DIR=" + templates, "NGINX_ENVSUBST_OUTPUT_DIR=" + out,
	}
	var stderr testbin.SyncBuffer
	var gotPath string
	var gotArgs, gotEnv []string
	exec := func(path string, args, env []string) error {
		gotPath, gotArgs, gotEnv = path, args, env
		return nil
	}
	if err := run([]string{"nginx-entrypoint", "nginx", "-g", "daemon off;"}, environ, &stderr, exec); err != nil {
		t.Fatalf("run error = %v", err)
	}
	got, err := os.ReadFile(filepath.Join(out, "site.conf"))
	if err != nil {
		t.Fatalf("site.conf not rendered: %v; stderr:\n%s", err, &stderr)
	}
	want := "listen 8443 ssl default_server; http2 on;\nreturn 308 https://$host$request_uri; # $HOSTNAME ${OTHER}\n"
	if string(got) != want {
		t.Errorf("site.conf = %q, want %q", got, want)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 {
		t.Errorf("output directory has %d entries, want site.conf only (no hidden copies, no notes.txt)", len(entries))
	}
	if filepath.Base(gotPath) != "nginx" || !slices.Equal(gotArgs, []string{"nginx", "-g", "daemon off;"}) || !slices.Equal(gotEnv, environ) {
		t.Errorf("exec(%q, %q, ...) after rendering, want nginx's path, the command and the environment", gotPath, gotArgs)
	}
}

func TestRunSkips(t *testing.T) {
	templates := configMapDir(t, map[string]string{"site.conf.template": "${EDGE_X}"})
	readOnly := t.TempDir()
	if err := os.Chmod(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	noop := func(string, []string, []string) error { return nil }
	tests := []struct {
		name     string
		args     []string
		out      string
		wantLog  string
		rendered bool
	}{
		{"not nginx", []string{"x", "true"}, t.TempDir(), "", false},
		{"read-only output", []string{"x", "nginx", "-t"}, readOnly, "is not writable", false},
		{"no templates", []string{"x", "nginx", "-t"}, t.TempDir(), "", false},
	}
	for _, tt := range tests {
		if tt.name == "read-only output" && os.Geteuid() == 0 {
			t.Log("read-only output: not checked as root, who may write there (in the image, a read-only mount)")
			continue
		}
		dir := templates
		if tt.name == "no templates" {
			dir = filepath.Join(t.TempDir(), "missing")
		}
		var stderr testbin.SyncBuffer
		environ := []string{"PATH=" + os.Getenv("PATH"), "EDGE_X=1", "NGINX_ENVSUBST_TEMPLATE_DIR=" + dir, "NGINX_ENVSUBST_OUTPUT_DIR=" + tt.out}
		if err := run(tt.args, environ, &stderr, noop); err != nil {
			t.Errorf("%s: run error = %v", tt.name, err)
		}
		entries, _ := os.ReadDir(tt.out)
		if (len(entries) > 0) != tt.rendered || !strings.Contains(stderr.String(), tt.wantLog) {
			t.Errorf("%s: %d files rendered, stderr %q; want none, and %q", tt.name, len(entries), &stderr, tt.wantLog)
		}
	}
	if err := run([]string{"x", "no-such-command-here"}, nil, &testbin.SyncBuffer{}, noop); err == nil {
		t.Error("run with a missing command: error = nil, want one")
	}
	if err := run([]string{"x", "nginx"}, []string{"NGINX_ENVSUBST_FILTER=("}, &testbin.SyncBuffer{}, noop); err == nil {
		t.Error("run with a bad NGINX_ENVSUBST_FILTER: error = nil, want one")
	}
}
