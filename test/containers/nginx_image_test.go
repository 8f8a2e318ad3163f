package containers_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/edge"
	"example.com/app/internal/edge/edgetest"
	"example.com/app/internal/testbin"
)

// TestClusterNginxImage builds the test cluster's stand-in for
// nginx-unprivileged as cluster.sh does (cluster.sh nginx-rootfs, from
// build.sh's nginx) and runs each template in it as Kubernetes would: uid
// 10101, a read-only root filesystem, no capabilities, the templates
// mounted read-only, writable directories where the manifests mount
// emptyDirs, and the variables the manifests set. nginx -t must pass without
// a warning, and nginx must answer /healthz over TLS and HTTP/2; the
// frontend's preStop must run in it and make /healthz fail.
func TestClusterNginxImage(t *testing.T) {
	requirePodman(t)
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cluster := filepath.Join(root, "test", "cluster")
	out, err := exec.Command(filepath.Join(cluster, "build.sh"), "nginx-bin").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(strings.TrimSpace(string(out))); err != nil || os.Geteuid() != 0 {
		msg := "needs root and the nginx of test/cluster/build.sh nginx (make nginx-modern)"
		if !edgetest.InCI() {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}

	ctx := t.TempDir()
	copyDir(t, filepath.Join(cluster, "images", "nginx"), ctx)
	if out, err := exec.Command(filepath.Join(cluster, "cluster.sh"), "nginx-rootfs", filepath.Join(ctx, "rootfs")).CombinedOutput(); err != nil {
		t.Fatalf("cluster.sh nginx-rootfs: %v\n%s", err, out)
	}
	image := imagePrefix + "nginx-standin:" + strings.ToLower(randomSecret()[:12])
	podman(t, "build", "--quiet", "--layers=false", "-t", image, ctx)
	t.Cleanup(func() { podmanQuiet("rmi", "--force", image) })

	tlsDir := filepath.Join(t.TempDir(), "tls")
	roots := edgetest.WriteCerts(t, tlsDir)
	// The Secret's files are readable by the pod's fsGroup, 10101.
	chownAll(t, filepath.Dir(tlsDir), 10101)

	// As the manifests set them (kubernetes/check compares those with the
	// templates); the upstreams are never reached here.
	k8s := edge.Params{
		HTTPSListen: "8443", HTTPListen: "8080", TLSDir: "/etc/tls", HTTP2: edge.HTTP2Directive,
		UIDir: "/usr/share/nginx/html/ui", DrainFile: "/tmp/draining", Auth: []string{"127.0.0.1:1"}, Hello: []string{"127.0.0.1:2"}, Monolith: []string{"127.0.0.1:8080"},
	}
	for _, name := range []string{"frontend.conf.template", "proxy.conf.template"} {
		t.Run(name, func(t *testing.T) {
			templates := t.TempDir()
			if err := os.Chmod(templates, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(templates, name), []byte(edgetest.ReadConfig(t, name)), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"run", "--user", "10101:10101"}, runArgs()...)
			// emptyDirs: host directories anyone may write, as the kubelet makes them.
			for _, dir := range []string{"/tmp", "/var/cache/nginx", "/etc/nginx/conf.d"} {
				host := t.TempDir()
				if err := os.Chmod(host, 0o777); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--volume", host+":"+dir)
			}
			args = append(args, "--volume", templates+":/etc/nginx/templates:ro", "--volume", tlsDir+":/etc/tls:ro",
				"--env", "NGINX_ENVSUBST_FILTER="+edge.EnvFilter, "--env", "HOSTNAME_SET_BY_KUBERNETES=x")
			for k, v := range k8s.Env() {
				args = append(args, "--env", k+"="+v)
			}

			// nginx -t writes to stderr, which podman() does not return.
			cmd := exec.Command("podman", append(append([]string{}, args...), "--rm", image, "nginx", "-t")...)
			combined, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(combined), "test is successful") || strings.Contains(string(combined), "[warn]") {
				t.Fatalf("nginx -t in the image: %v\n%s", err, combined)
			}
			t.Logf("nginx -t in the image:\n%s", combined)

			addr := edgetest.FreeAddr(t)
			cname := "apptest-nginx-" + strings.ToLower(randomSecret()[:8])
			podman(t, append(append([]string{}, args...), "--detach", "--name", cname, "--publish", addr+":8443", image)...)
			t.Cleanup(func() {
				if t.Failed() {
					logs, _ := exec.Command("podman", "logs", cname).CombinedOutput() // best effort: the failure is reported already
					t.Logf("%s logs:\n%s", cname, logs)
				}
				podmanQuiet("rm", "--force", "--time", "0", cname)
			})
			c := &http.Client{
				Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, ForceAttemptHTTP2: true},
				Timeout:   2 * time.Second,
			}
			defer c.CloseIdleConnections()
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				resp, err := c.Get("https://" + addr + "/healthz")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || string(body) != "ok\n" || resp.ProtoMajor != 2 {
						t.Fatalf("GET /healthz = %d %q over %s, want 200 \"ok\\n\" over HTTP/2", resp.StatusCode, body, resp.Proto)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET /healthz: %v after 30 s", err)
				}
			}
			if name != "frontend.conf.template" {
				return
			}
			// The frontend's preStop (deployments/frontend.yaml) runs in
			// this image: a shell, sleep and touch, and the drain file
			// in the /tmp emptyDir makes /healthz fail.
			podman(t, "exec", "--env", "DRAIN_SERVE_SECONDS=0", "--env", "DRAIN_UNREADY_SECONDS=0", cname,
				"/bin/sh", "-c", `sleep "$DRAIN_SERVE_SECONDS" && touch "$EDGE_DRAIN_FILE" && sleep "$DRAIN_UNREADY_SECONDS"`)
			resp, err := c.Get("https://" + addr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("GET /healthz after the preStop made %s: %d, want 503", k8s.DrainFile, resp.StatusCode)
			}
		})
	}
}

// copyDir copies the regular files of src (not its subdirectories) into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// chownAll gives dir and everything in it to uid and gid id.
func chownAll(t *testing.T, dir string, id int) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, id, id)
	})
	if err != nil {
		t.Fatal(err)
	}
}
