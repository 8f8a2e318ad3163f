package containers_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"example.com/app/internal/edge"
	"example.com/app/internal/edge/edgetest"
	"example.com/app/internal/rollout"
	"example.com/app/internal/testbin"
	"example.com/app/internal/token"
)

const (
	imagePrefix  = "localhost/apptest/" // the images this package builds, and removes when done
	imageUser    = "65532:65532"        // the Dockerfiles' USER
	maxImageSize = 10_000_000           // bytes: the images' size budget (10 MB)
	drain        = 5 * time.Second      // the services' default SHUTDOWN_DRAIN
)

// TestMain removes the images and build directory the tests made.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, image := range built.all() {
		podmanQuiet("rmi", "--force", image)
	}
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// requirePodman skips the test unless CONTAINER_TESTS=1 asks for container
// tests, and fails it if podman is missing, unless SKIP_CONTAINERS=1 outside
// CI.
func requirePodman(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a container test")
	}
	if os.Getenv("CONTAINER_TESTS") != "1" {
		t.Skip("container tests run only when asked: CONTAINER_TESTS=1, as make test-containers sets")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("SKIP_CONTAINERS") == "1" && !edgetest.InCI() {
			t.Skip("SKIP_CONTAINERS=1: podman is not installed")
		}
		t.Fatal("podman not found: install it with `apt-get install -y podman runc` (Debian/Ubuntu) " +
			"or see https://podman.io/docs/installation; outside CI, SKIP_CONTAINERS=1 skips these tests")
	}
}

// podman runs podman with args, at most 2 minutes, and returns its standard
// output, trimmed. It fails the test if podman fails.
func podman(t testing.TB, args ...string) string {
	t.Helper()
	out, err := podmanErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func podmanErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// podmanQuiet runs podman for cleaning up, when there is no test to fail.
func podmanQuiet(args ...string) {
	if _, err := podmanErr(args...); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
	}
}

// images are the images built for the tests, for this machine's
// architecture, named under imagePrefix.
type images struct {
	dir                   string // the build contexts
	auth, monolith        string // 1.0.0
	hello1, hello2        string // 1.0.0 and 2.0.0
	buildTime, imagesTime time.Duration
}

func (im images) all() []string {
	return slices.DeleteFunc([]string{im.auth, im.monolith, im.hello1, im.hello2}, func(s string) bool { return s == "" })
}

var (
	buildOnce sync.Once
	built     images
	buildErr  error
)

// buildImages builds the images once for all tests: the binaries as `make
// build-linux` does (static, -trimpath, stripped, the version set), then the
// images from dockerfiles/ with a build context holding only bin/linux-ARCH/
// and the repository's .dockerignore.
func buildImages(t *testing.T) images {
	t.Helper()
	buildOnce.Do(func() { buildErr = build(&built) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func build(im *images) error {
	root, err := testbin.ModuleRoot()
	if err != nil {
		return err
	}
	if im.dir, err = os.MkdirTemp("", "containertest-"); err != nil {
		return err
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return err
	}
	arch := runtime.GOARCH
	for _, b := range []struct {
		version  string
		services []string
		images   []*string
	}{
		{"1.0.0", []string{"auth", "hello", "monolith"}, []*string{&im.auth, &im.hello1, &im.monolith}},
		{"2.0.0", []string{"hello"}, []*string{&im.hello2}},
	} {
		contextDir := filepath.Join(im.dir, b.version)
		start := time.Now()
		ldflags := "-s -w -X main.version=" + b.version + " -X main.commit=containertest"
		if _, err := testbin.Build(filepath.Join(contextDir, "bin", "linux-"+arch), ldflags, b.services...); err != nil {
			return err
		}
		im.buildTime += time.Since(start)
		if err := os.WriteFile(filepath.Join(contextDir, ".dockerignore"), ignore, 0o644); err != nil {
			return err
		}
		start = time.Now()
		for i, s := range b.services {
			tag := imagePrefix + s + ":" + b.version
			// --layers=false: podman 4.3 keeps no intermediate images then,
			// which a later manifest list would trip over (podman#19757).
			if _, err := podmanErr("build", "--layers=false", "--platform", "linux/"+arch,
				"-f", filepath.Join(root, "dockerfiles", s+".Dockerfile"),
				"--build-arg", "VERSION="+b.version, "--build-arg", "REVISION=containertest",
				"-t", tag, contextDir); err != nil {
				return err
			}
			*b.images[i] = tag
		}
		im.imagesTime += time.Since(start)
	}
	return nil
}

// container is a running container whose app and ops ports are published on
// loopback.
type container struct {
	Name     string
	App, Ops string // host:port of the app port (8080) and the ops port (8081)
}

// runArgs are what every container runs with: as locked down as the
// Kubernetes manifests ask, plus what podman needs on the CI machine.
func runArgs() []string {
	args := []string{
		"--pull=never", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		// Podman raises RLIMIT_NOFILE and RLIMIT_NPROC for rootful
		// containers by default, which a VM without CAP_SYS_RESOURCE refuses.
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
	}
	// crun, podman's default when installed, fails on hosts with hybrid
	// cgroups v1/v2 (such as the CI machine); runc works everywhere.
	if _, err := exec.LookPath("runc"); err == nil {
		args = append(args, "--runtime", "runc")
	}
	return args
}

// keyArgs are the podman arguments that give a container the run's token
// keys (see writeKeys).
type keyArgs struct {
	signer   []string // auth and the monolith: the private key, and the demo user
	verifier []string // hello: the public key only
}

// writeKeys writes a key pair for the test and returns the podman arguments
// that mount each file alone, read-only, where the service's setting names
// it: hello's container never holds the private key, as in Kubernetes.
func writeKeys(t *testing.T) keyArgs {
	t.Helper()
	f, _, err := token.WriteKeyPair(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The containers' user (65532, or a subordinate ID with rootless podman)
	// must read the files, which belong to the test's user: throwaway keys.
	if err := os.Chmod(f.Private, 0o644); err != nil {
		t.Fatal(err)
	}
	const private, public = "/etc/app/keys/" + token.PrivateKeyFile, "/etc/app/keys/" + token.PublicKeysFile
	return keyArgs{
		signer:   []string{"--volume", f.Private + ":" + private + ":ro", "--env", "JWT_PRIVATE_KEY_FILE=" + private, "--env", "DEMO_USER=true"},
		verifier: []string{"--volume", f.Public + ":" + public + ":ro", "--env", "JWT_PUBLIC_KEYS_FILE=" + public},
	}
}

// start runs image as a container named name, with keys (podman arguments
// from writeKeys) and env, on network if not empty, with its ports published
// on free loopback ports. It is removed when the test ends.
func start(t *testing.T, name, image, network string, keys []string, env ...string) *container {
	t.Helper()
	c := &container{Name: name, App: edgetest.FreeAddr(t), Ops: edgetest.FreeAddr(t)}
	args := append([]string{"run", "--detach", "--name", name}, runArgs()...)
	if network != "" {
		args = append(args, "--network", network)
	}
	args = append(args, "--publish", c.App+":8080", "--publish", c.Ops+":8081")
	args = append(args, keys...)
	for _, e := range env {
		args = append(args, "--env", e)
	}
	args = append(args, image)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	t.Cleanup(func() {
		if t.Failed() {
			// podman logs writes the container's stderr, the services' logs, to its own.
			logs, _ := exec.Command("podman", "logs", "--tail", "40", name).CombinedOutput() // best effort: the failure is reported already
			t.Logf("%s logs, the last 40 lines:\n%s", name, logs)
		}
		podmanQuiet("rm", "--force", "--time", "0", name)
	})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("podman run %s: %v\n%s", name, err, out)
	}
	return c
}

// waitReady polls the container's /readiness until it answers 200.
func (c *container) waitReady(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://" + c.Ops + "/readiness")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			state, _ := podmanErr("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c.Name)
			t.Fatalf("%s not ready within 20s (state %s; last: %v)", c.Name, state, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the container as Kubernetes would (SIGTERM, then SIGKILL after
// 30 s, longer than the drain) and returns how long it took and the exit code.
func (c *container) stop(t *testing.T) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	podman(t, "stop", "--time", "30", c.Name)
	took := time.Since(start)
	return took, podman(t, "inspect", "--format", "{{.State.ExitCode}}", c.Name)
}

func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func TestImages(t *testing.T) {
	requirePodman(t)
	im := buildImages(t)
	t.Logf("built the binaries in %s and the images in %s", im.buildTime.Round(time.Second), im.imagesTime.Round(time.Second))
	keys := writeKeys(t)
	for _, tt := range []struct{ service, version, image string }{
		{"auth", "1.0.0", im.auth},
		{"hello", "1.0.0", im.hello1},
		{"hello", "2.0.0", im.hello2},
		{"monolith", "1.0.0", im.monolith},
	} {
		t.Run(tt.service+"-"+tt.version, func(t *testing.T) {
			checkImageConfig(t, tt.image, tt.service, tt.version)
			checkImageFiles(t, tt.image, tt.service)
			checkContainer(t, tt.image, tt.service, tt.version, keys)
		})
	}
}

// checkImageConfig checks the image's user, ports, entrypoint, labels and size.
func checkImageConfig(t *testing.T, image, service, version string) {
	var inspect []struct {
		Size         int64
		Architecture string
		Config       struct {
			User         string
			ExposedPorts map[string]struct{}
			Entrypoint   []string
			Env          []string
			Labels       map[string]string
		}
	}
	if err := json.Unmarshal([]byte(podman(t, "image", "inspect", image)), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect %s: %v, %d images", image, err, len(inspect))
	}
	got := inspect[0]
	t.Logf("%s: %s, %d bytes", image, got.Architecture, got.Size)
	if got.Config.User != imageUser {
		t.Errorf("%s: USER %q, want %q (numeric, non-root)", image, got.Config.User, imageUser)
	}
	for _, port := range []string{"8080/tcp", "8081/tcp"} {
		if _, ok := got.Config.ExposedPorts[port]; !ok {
			t.Errorf("%s: exposed ports %v, want %s", image, got.Config.ExposedPorts, port)
		}
	}
	if want := []string{"/" + service}; !slices.Equal(got.Config.Entrypoint, want) {
		t.Errorf("%s: entrypoint %q, want %q", image, got.Config.Entrypoint, want)
	}
	for _, e := range got.Config.Env {
		if strings.Contains(e, "SECRET") || strings.Contains(e, "PASSWORD") {
			t.Errorf("%s: has environment variable %q, want no secrets in the image", image, e)
		}
	}
	for label, want := range map[string]string{
		"org.opencontainers.image.title":    service,
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": "containertest",
	} {
		if got := got.Config.Labels[label]; got != want {
			t.Errorf("%s: label %s = %q, want %q", image, label, got, want)
		}
	}
	for _, label := range []string{"org.opencontainers.image.source", "org.opencontainers.image.description"} {
		if got.Config.Labels[label] == "" {
			t.Errorf("%s: no label %s", image, label)
		}
	}
	if got.Size > maxImageSize {
		t.Errorf("%s: %d bytes, want at most %d", image, got.Size, maxImageSize)
	}
}

// checkImageFiles checks that the image's file system holds the binary and
// no shell: it lists a container's exported files.
func checkImageFiles(t *testing.T, image, service string) {
	name := fmt.Sprintf("apptest-%d-files-%s", os.Getpid(), service)
	podman(t, "create", "--pull=never", "--name", name, image)
	defer podmanQuiet("rm", "--force", name)
	tarFile := filepath.Join(t.TempDir(), "rootfs.tar")
	podman(t, "export", "--output", tarFile, name)
	f, err := os.Open(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var files []string
	for tr := tar.NewReader(f); ; {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the export of %s: %v", image, err)
		}
		if h.Typeflag != tar.TypeDir {
			files = append(files, strings.TrimPrefix(h.Name, "./"))
		}
	}
	if !slices.Contains(files, service) {
		t.Errorf("%s: files %q, want /%s", image, files, service)
	}
	for _, f := range files {
		if base := filepath.Base(f); base == "sh" || base == "bash" || base == "busybox" {
			t.Errorf("%s: has a shell, %s; want none", image, f)
		}
	}
	t.Logf("%s: files %q", image, files)
}

// checkContainer runs the image read-only, without capabilities, and checks
// the process's user, its probes and /version, and that SIGTERM stops it
// cleanly.
func checkContainer(t *testing.T, image, service, version string, keys keyArgs) {
	name := fmt.Sprintf("apptest-%d-%s-%s", os.Getpid(), service, version)
	k := keys.signer
	if service == "hello" {
		k = keys.verifier
	}
	c := start(t, name, image, "", k, "SHUTDOWN_DRAIN=1s")
	c.waitReady(t)

	// The process as the host sees it: user, capabilities, no_new_privs.
	pid := podman(t, "inspect", "--format", "{{.State.Pid}}", name)
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatalf("reading the container process's status: %v", err)
	}
	for _, want := range []string{"Uid:\t65532\t65532\t65532\t65532\n", "Gid:\t65532\t65532\t65532\t65532\n", "CapEff:\t0000000000000000\n", "NoNewPrivs:\t1\n"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("%s: /proc/%s/status has no %q:\n%s", name, pid, want, status)
		}
	}
	if top := podman(t, "top", name, "huser"); !strings.HasSuffix(top, "\n65532") {
		t.Errorf("podman top %s huser = %q, want 65532", name, top)
	}
	if ro := podman(t, "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name); ro != "true" {
		t.Errorf("%s: read-only root file system = %s, want true", name, ro)
	}

	client := &http.Client{Timeout: 2 * time.Second}
	for _, path := range []string{"/healthz", "/readiness"} {
		resp, err := client.Get("http://" + c.Ops + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
	}
	resp, err := client.Get("http://" + c.App + "/version")
	if err != nil {
		t.Fatalf("GET /version: %v", err)
	}
	var body struct{ Service, Version string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || body.Service != service || body.Version != version || resp.Header.Get(rollout.VersionHeader) != version {
		t.Errorf("GET /version: %+v (error %v), %s %q; want service %q, version %q",
			body, err, rollout.VersionHeader, resp.Header.Get(rollout.VersionHeader), service, version)
	}

	took, exit := c.stop(t)
	if exit != "0" || took > 10*time.Second {
		t.Errorf("podman stop %s: exit code %s after %s, want 0 after the 1 s drain", name, exit, took.Round(100*time.Millisecond))
	}
}

// TestZeroDowntimeRollout replaces two hello 1.0.0 containers behind the
// edge nginx with 2.0.0 ones, one at a time, while the rollout load tester
// sends a steady 100 requests/s to /secure through the edge, and expects no
// request to fail. Between nginx and the hello containers is a stand-in for
// the hello Service (see service): nginx's upstream is one address, and only
// ready containers get new connections.
func TestZeroDowntimeRollout(t *testing.T) {
	requirePodman(t)
	im := buildImages(t)
	id := fmt.Sprintf("apptest-%d", os.Getpid())
	network := id
	podman(t, "network", "create", network)
	t.Cleanup(func() { podmanQuiet("network", "rm", "--force", network) }) // after the containers: cleanups run last first
	keys := writeKeys(t)

	hello := newService(t)
	auth := start(t, id+"-auth", im.auth, network, keys.signer)
	old := []*container{
		start(t, id+"-hello-1", im.hello1, network, keys.verifier),
		start(t, id+"-hello-2", im.hello1, network, keys.verifier),
	}
	auth.waitReady(t)
	for _, c := range old {
		c.waitReady(t)
		hello.add(c)
		hello.waitReady(t, c)
	}
	front := edgetest.Start(t, edgetest.ReadConfig(t, "frontend.conf.template"), edge.Params{
		Auth: []string{auth.App}, Hello: []string{hello.Addr()}, UIDir: edgetest.UIDir(t),
	})

	transport := rollout.NewTransport(&tls.Config{RootCAs: front.CA})
	defer transport.CloseIdleConnections()
	tok, err := rollout.Login(t.Context(), &http.Client{Transport: transport, Timeout: 5 * time.Second}, front.URL+"/login", "user", "password")
	if err != nil {
		t.Fatal(err)
	}

	// The load: until cancelled, at most 2 minutes.
	ctx, stopLoad := context.WithTimeout(t.Context(), 2*time.Minute)
	defer stopLoad()
	var out bytes.Buffer
	type result struct {
		rep *rollout.Report
		err error
	}
	done := make(chan result, 1)
	loadStart := time.Now()
	go func() {
		rep, err := rollout.Run(ctx, &out, rollout.Options{
			URL:       front.URL + "/secure",
			Rate:      100,
			Workers:   8,
			Timeout:   2 * time.Second,
			Header:    http.Header{"Authorization": {"Bearer " + tok}},
			Transport: transport,
		})
		done <- result{rep, err}
	}()
	var events []string
	event := func(format string, args ...any) {
		events = append(events, fmt.Sprintf("%5.1fs  %s", time.Since(loadStart).Seconds(), fmt.Sprintf(format, args...)))
	}

	time.Sleep(2500 * time.Millisecond) // all 1.0.0
	for i, o := range old {
		name := fmt.Sprintf("%s-hello-%d", id, i+3)
		event("start %s (2.0.0)", name)
		c := start(t, name, im.hello2, network, keys.verifier)
		c.waitReady(t)
		hello.add(c)
		hello.waitReady(t, c)
		event("%s ready, in the service; stop %s (SIGTERM, drain %s)", name, o.Name, drain)
		took, exit := o.stop(t)
		hello.remove(o)
		event("%s stopped after %s, exit code %s", o.Name, took.Round(100*time.Millisecond), exit)
		if exit != "0" || took < drain {
			t.Errorf("podman stop %s: exit code %s after %s, want 0 after the %s drain", o.Name, exit, took, drain)
		}
	}
	time.Sleep(2500 * time.Millisecond) // all 2.0.0
	event("stop the load")
	stopLoad()
	r := <-done
	t.Logf("rollout events:\n%s", strings.Join(events, "\n"))
	t.Logf("rollout load tester output:\n%s", &out)
	if r.err != nil {
		t.Fatal(r.err)
	}
	rep := r.rep

	if n := rep.Failures.Total(); n > 0 {
		t.Errorf("%d of %d requests failed (%+v), want none: %q", n, rep.Requests, rep.Failures, rep.Errors)
	}
	if rep.Rate < 90 {
		t.Errorf("achieved %.1f requests/s, want about 100", rep.Rate)
	}
	var versions []string
	for _, v := range rep.Versions {
		versions = append(versions, v.Version)
	}
	if !slices.Equal(versions, []string{"1.0.0", "2.0.0"}) {
		t.Fatalf("versions served %q, want 1.0.0 then 2.0.0", versions)
	}
	only := func(s rollout.Second, version string) bool {
		return len(s.Versions) == 1 && s.Versions[0].Version == version && s.Versions[0].Count == s.Requests
	}
	// The load ran 2.5 s before the first replacement and after the last.
	if first := rep.Seconds[0]; !only(first, "1.0.0") {
		t.Errorf("first second: %d requests, versions %+v; want all 1.0.0", first.Requests, first.Versions)
	}
	for _, s := range rep.Seconds[len(rep.Seconds)-2:] {
		if !only(s, "2.0.0") {
			t.Errorf("second ending at %s: %d requests, versions %+v; want all 2.0.0", s.Elapsed, s.Requests, s.Versions)
		}
	}
}
