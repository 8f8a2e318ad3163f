// Command nginx-entrypoint is the entrypoint of the test cluster's stand-in
// for the nginx-unprivileged image (test/cluster/images/nginx): what the
// official image's docker-entrypoint.sh does for the manifests, with the
// project's one template renderer (internal/edge) instead of envsubst.
//
//	nginx-entrypoint nginx -g 'daemon off;'
//
// When the command is nginx, each *.template under /etc/nginx/templates is
// rendered into /etc/nginx/conf.d (same relative path, suffix dropped) with
// the environment variables that NGINX_ENVSUBST_FILTER matches, as the
// official image's 20-envsubst-on-templates.sh does; then the command
// replaces this process. NGINX_ENVSUBST_TEMPLATE_DIR,
// NGINX_ENVSUBST_TEMPLATE_SUFFIX and NGINX_ENVSUBST_OUTPUT_DIR move those
// places, as there. Rendering is skipped when the template directory is
// missing or the output directory is not writable (a ConfigMap mounted
// there), as there.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"example.com/app/internal/edge"
)

func main() {
	err := run(os.Args, os.Environ(), os.Stderr, syscall.Exec)
	// run returns only if it could not replace itself with the command.
	fmt.Fprintf(os.Stderr, "nginx-entrypoint: %v\n", err)
	os.Exit(1)
}

// run renders the templates if args[1] is nginx, then execs args[1:] with
// environ. execve is syscall.Exec outside tests.
func run(args, environ []string, stderr io.Writer, execve func(string, []string, []string) error) error {
	if len(args) < 2 {
		return errors.New("usage: nginx-entrypoint COMMAND [ARG...]")
	}
	cmd := args[1:]
	getenv := func(name, def string) string {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name && v != "" {
				return v
			}
		}
		return def
	}
	if cmd[0] == "nginx" || cmd[0] == "nginx-debug" {
		vars, err := edge.FilterEnv(environ, getenv("NGINX_ENVSUBST_FILTER", ""))
		if err != nil {
			return err
		}
		dir := getenv("NGINX_ENVSUBST_TEMPLATE_DIR", "/etc/nginx/templates")
		suffix := getenv("NGINX_ENVSUBST_TEMPLATE_SUFFIX", ".template")
		out := getenv("NGINX_ENVSUBST_OUTPUT_DIR", "/etc/nginx/conf.d")
		if err := renderTemplates(dir, suffix, out, vars, stderr); err != nil {
			return err
		}
	}
	path, err := exec.LookPath(cmd[0]) // on this process's PATH: environ's, outside tests
	if err != nil {
		return err
	}
	return execve(path, cmd, environ)
}

// renderTemplates renders every file under dir whose name ends in suffix
// into out. A ConfigMap volume keeps its files in hidden ..data directories
// behind symbolic links: the links are followed, the hidden copies skipped.
func renderTemplates(dir, suffix, out string, vars map[string]string, stderr io.Writer) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := syscall.Access(out, 2 /* W_OK */); err != nil {
		fmt.Fprintf(stderr, "nginx-entrypoint: %s is not writable (%v): templates not rendered\n", out, err)
		return nil
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), suffix) {
			return nil
		}
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() { // follows a link
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		dst := filepath.Join(out, strings.TrimSuffix(rel, suffix))
		tmpl, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "nginx-entrypoint: rendering %s to %s\n", path, dst)
		return os.WriteFile(dst, []byte(edge.Render(string(tmpl), vars)), 0o644)
	})
}
