package containers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/edge/edgetest"
	"example.com/app/internal/testbin"
)

// TestMakePushPodman runs the real `make push` with podman for two
// platforms, as a user would, against a real registry (Debian's
// docker-registry, the CNCF distribution server) on a free loopback port, and
// reads back what arrived: one multi-platform image per binary, each
// platform's image for its architecture and with the version's labels.
// podman keeps what it builds in a store of the test's own, so that the
// machine's images are left alone.
func TestMakePushPodman(t *testing.T) {
	requirePodman(t)
	registryBin, err := exec.LookPath("docker-registry")
	if err != nil {
		if os.Getenv("SKIP_CONTAINERS") == "1" && !edgetest.InCI() {
			t.Skip("SKIP_CONTAINERS=1: docker-registry is not installed")
		}
		t.Fatal("docker-registry not found: install it with `apt-get install docker-registry` (Debian/Ubuntu); " +
			"outside CI, SKIP_CONTAINERS=1 skips this test")
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatal("make not found: install it with `apt-get install make`")
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := edgetest.FreeAddr(t)
	registry := startRegistry(t, registryBin, dir, addr)

	// podman's own store (vfs: nothing left mounted) and the registry as an
	// insecure (plain HTTP) one, through podman's documented environment.
	storageConf := filepath.Join(dir, "storage.conf")
	writeFile(t, storageConf, fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "storage"), filepath.Join(dir, "run")))
	registriesConf := filepath.Join(dir, "registries.conf")
	writeFile(t, registriesConf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", addr))

	const version = "9.9.9"
	start := time.Now()
	cmd := exec.Command(makeBin, "push", "CONTAINER_ENGINE=podman", "PLATFORMS=linux/amd64,linux/arm64",
		"REGISTRY="+addr+"/apptest", "VERSION="+version, "REVISION=maketest")
	cmd.Dir = root
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	}), "CONTAINERS_STORAGE_CONF="+storageConf, "CONTAINERS_REGISTRIES_CONF="+registriesConf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make push CONTAINER_ENGINE=podman: %v\n%s", err, out)
	}
	t.Logf("make push CONTAINER_ENGINE=podman, two platforms: %s", time.Since(start).Round(time.Second))

	for _, b := range []string{"auth", "hello", "monolith"} {
		var index struct {
			Manifests []struct {
				Digest   string
				Platform struct{ OS, Architecture string }
			}
		}
		getJSON(t, registry+"/v2/apptest/"+b+"/manifests/"+version, &index,
			"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
		var platforms []string
		for _, m := range index.Manifests {
			platform := m.Platform.OS + "/" + m.Platform.Architecture
			platforms = append(platforms, platform)
			var manifest struct{ Config struct{ Digest string } }
			getJSON(t, registry+"/v2/apptest/"+b+"/manifests/"+m.Digest, &manifest,
				"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
			var config struct {
				OS, Architecture string
				Config           struct{ Labels map[string]string }
			}
			getJSON(t, registry+"/v2/apptest/"+b+"/blobs/"+manifest.Config.Digest, &config)
			if got := config.OS + "/" + config.Architecture; got != platform {
				t.Errorf("%s:%s for %s: the image is for %s", b, version, platform, got)
			}
			if got := config.Config.Labels["org.opencontainers.image.version"]; got != version {
				t.Errorf("%s:%s for %s: version label %q, want %q", b, version, platform, got, version)
			}
		}
		slices.Sort(platforms)
		if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
			t.Errorf("%s:%s in the registry: platforms %q, want %q", b, version, platforms, want)
		}
	}
}

// startRegistry runs a registry on addr storing under dir until the test
// ends, and returns its URL.
func startRegistry(t *testing.T, bin, dir, addr string) string {
	t.Helper()
	config := filepath.Join(dir, "registry.yml")
	writeFile(t, config, fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n",
		filepath.Join(dir, "registry"), addr))
	cmd := exec.Command(bin, "serve", config)
	var logs testbin.SyncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait() // killed: its error says so
		if t.Failed() {
			t.Logf("docker-registry's log:\n%s", logs.String())
		}
	})
	url := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(url + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s not answering within 10s (last: %v)\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getJSON GETs url, accepting the media types given, and decodes the JSON
// answer into v.
func getJSON(t *testing.T, url string, v any, accept ...string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decoding: %v", url, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
