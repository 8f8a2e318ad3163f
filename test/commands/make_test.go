package commands_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"example.com/app/internal/testbin"
)

// fakeEngine is a recording stand-in for docker or podman (NAME), a test
// double because no container engine runs in these tests. It appends its
// command line to $FAKE_RECORD (an argument holding a space in single
// quotes) and does what the real command would, as far as the Makefile can
// tell:
//   - docker buildx inspect NAME fails unless docker buildx create --name
//     NAME ran before (state kept in $FAKE_STATE);
//   - a build fails, as BuildKit's and buildah's COPY do, when the build
//     context lacks a binary that dockerfiles/ copies for one of the
//     platforms (bin/linux-ARCH/BINARY).
const fakeEngine = `#!/bin/sh
{
	printf '%s' NAME
	for a; do
		case $a in
		*' '*) printf " '%s'" "$a" ;;
		*) printf ' %s' "$a" ;;
		esac
	done
	echo
} >>"$FAKE_RECORD"

check_context() {
	while [ $# -gt 0 ]; do
		case $1 in
		--platform) platforms=$2; shift ;;
		-f) file=$2; shift ;;
		esac
		context=$1
		shift
	done
	binary=${file##*/}
	binary=${binary%.Dockerfile}
	IFS=,
	for p in $platforms; do
		if [ ! -f "$context/bin/linux-${p#linux/}/$binary" ]; then
			echo "ERROR: failed to compute cache key: \"/bin/linux-${p#linux/}/$binary\": not found" >&2
			exit 1
		fi
	done
}

case "NAME $1 $2" in
"docker buildx inspect")
	[ -e "$FAKE_STATE/builder-$3" ] && exit 0
	echo "ERROR: no builder \"$3\" found" >&2
	exit 1 ;;
"docker buildx create")
	shift 2
	while [ $# -gt 0 ]; do
		[ "$1" = --name ] && : >"$FAKE_STATE/builder-$2"
		shift
	done ;;
"docker buildx build")
	shift 2
	check_context "$@" ;;
"podman build "*)
	shift
	check_context "$@" ;;
esac
exit 0
`

// workDir is a copy of what `make build-linux`, `make images` and `make
// push` read (the Makefile, the Go sources, dockerfiles/), so that the tests
// can build into its bin/ without touching the checkout's.
var (
	workOnce sync.Once
	workPath string
	workErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if workPath != "" {
		os.RemoveAll(workPath)
	}
	os.Exit(code)
}

func workDir(t *testing.T) string {
	t.Helper()
	workOnce.Do(func() {
		root, err := testbin.ModuleRoot()
		if err != nil {
			workErr = err
			return
		}
		if workPath, workErr = os.MkdirTemp("", "commandstest-"); workErr != nil {
			return
		}
		for _, name := range []string{"Makefile", "go.mod", "go.sum", ".dockerignore"} {
			data, err := os.ReadFile(filepath.Join(root, name))
			if err != nil {
				workErr = err
				return
			}
			if workErr = os.WriteFile(filepath.Join(workPath, name), data, 0o644); workErr != nil {
				return
			}
		}
		for _, dir := range []string{"dockerfiles", "auth", "hello", "monolith", "internal", "cmd"} {
			if workErr = os.CopyFS(filepath.Join(workPath, dir), os.DirFS(filepath.Join(root, dir))); workErr != nil {
				return
			}
		}
	})
	if workErr != nil {
		t.Fatal(workErr)
	}
	return workPath
}

// toolDir returns a directory to be the whole PATH of make: the fake
// engines named, and links to the real go and the usual commands the
// Makefile's recipes run (make runs simple ones without a shell).
func toolDir(t *testing.T, engines ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"go", "awk", "sh", "echo", "printf", "test", "mkdir", "rm", "sed"} {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("%s not found: %v", name, err)
		}
		if err := os.Symlink(path, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range engines {
		script := strings.ReplaceAll(fakeEngine, "NAME", name)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// makeRun runs the real make in dir with PATH set to path and args, in an
// environment without the settings the Makefile reads (so that the
// caller's REGISTRY or an outer make's flags do not leak in). It returns
// make's output and the engines' recorded command lines.
func makeRun(t *testing.T, dir, path string, args ...string) (out string, recorded []string, err error) {
	t.Helper()
	makeBin, lookErr := exec.LookPath("make")
	if lookErr != nil {
		t.Fatal("make not found: install it (apt-get install make) to test the Makefile")
	}
	state := t.TempDir()
	record := filepath.Join(state, "record")
	cmd := exec.Command(makeBin, append([]string{"--no-print-directory"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(makeEnv(t), "PATH="+path, "FAKE_RECORD="+record, "FAKE_STATE="+state)
	output, err := cmd.CombinedOutput()
	data, readErr := os.ReadFile(record)
	if readErr != nil && !os.IsNotExist(readErr) {
		t.Fatal(readErr)
	}
	if len(data) > 0 {
		recorded = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	return string(output), recorded, err
}

// makeEnv is the test's environment without PATH, make's own variables,
// GOOS/GOARCH, and every variable the Makefile sets with ?=.
func makeEnv(t *testing.T) []string {
	t.Helper()
	drop := map[string]bool{"PATH": true, "MAKEFLAGS": true, "MFLAGS": true, "MAKELEVEL": true, "MAKEOVERRIDES": true, "GOOS": true, "GOARCH": true}
	for _, m := range regexp.MustCompile(`(?m)^(?:export\s+)?([A-Z_]+)\s*\?=`).FindAllStringSubmatch(readMakefile(t), -1) {
		drop[m[1]] = true
	}
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return drop[name]
	})
}

func readMakefile(t *testing.T) string {
	t.Helper()
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// each returns format filled in with each of the three binaries, in the
// Makefile's order.
func each(format ...string) []string {
	var lines []string
	for _, b := range []string{"auth", "hello", "monolith"} {
		for _, f := range format {
			lines = append(lines, strings.ReplaceAll(f, "BINARY", b))
		}
	}
	return lines
}

// TestImagesAndPush pins the command lines `make images` and `make push`
// run, for each engine and for one and for two platforms, with recording
// stand-ins for docker and podman. The first case runs the real `make
// build-linux` (cross-compiling for amd64 and arm64); the others reuse its
// binaries with make -o build-linux, which treats that target as done.
func TestImagesAndPush(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the Makefile's cross-compilation")
	}
	dir := workDir(t)
	path := toolDir(t, "docker", "podman")
	settings := []string{"VERSION=1.2.3", "REGISTRY=registry.example/app", "REVISION=rev0", "COMMIT=c0"}
	const (
		image = "registry.example/app/BINARY:1.2.3"
		args  = "--build-arg VERSION=1.2.3 --build-arg REVISION=rev0 --build-arg SOURCE=https://example.com/app -f dockerfiles/BINARY.Dockerfile ."
	)
	native := "linux/" + runtime.GOARCH
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		native = "linux/amd64" // not in PLATFORMS: the first one
	}
	builder := []string{
		"docker buildx inspect app-multiplatform",
		"docker buildx create --name app-multiplatform --driver docker-container --driver-opt network=host",
	}
	podmanImages := func(platforms string) []string {
		return each("podman manifest rm "+image,
			"podman build --layers=false --platform "+platforms+" --manifest "+image+" "+args)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{
			"docker push, two platforms, real build-linux",
			[]string{"push", "CONTAINER_ENGINE=docker", "PLATFORMS=linux/amd64,linux/arm64"},
			append(builder, each("docker buildx build --builder app-multiplatform --platform linux/amd64,linux/arm64 --push -t "+image+" "+args)...),
		},
		{
			"docker push, one platform",
			[]string{"push", "CONTAINER_ENGINE=docker", "PLATFORMS=linux/arm64"},
			append(builder, each("docker buildx build --builder app-multiplatform --platform linux/arm64 --push -t "+image+" "+args)...),
		},
		{
			"docker push, the current builder",
			[]string{"push", "CONTAINER_ENGINE=docker", "PLATFORMS=linux/amd64,linux/arm64", "DOCKER_BUILDER="},
			each("docker buildx build --platform linux/amd64,linux/arm64 --push -t " + image + " " + args),
		},
		{
			"docker images, two platforms: this machine's is loaded",
			[]string{"images", "CONTAINER_ENGINE=docker", "PLATFORMS=linux/amd64,linux/arm64"},
			each("docker buildx build --platform " + native + " --load -t " + image + " " + args),
		},
		{
			"docker images, one platform",
			[]string{"images", "CONTAINER_ENGINE=docker", "PLATFORMS=linux/arm64"},
			each("docker buildx build --platform linux/arm64 --load -t " + image + " " + args),
		},
		{
			"podman images, two platforms",
			[]string{"images", "CONTAINER_ENGINE=podman", "PLATFORMS=linux/amd64,linux/arm64"},
			podmanImages("linux/amd64,linux/arm64"),
		},
		{
			"podman images, one platform",
			[]string{"images", "CONTAINER_ENGINE=podman", "PLATFORMS=linux/arm64"},
			podmanImages("linux/arm64"),
		},
		{
			"podman push, two platforms",
			[]string{"push", "CONTAINER_ENGINE=podman", "PLATFORMS=linux/amd64,linux/arm64"},
			append(podmanImages("linux/amd64,linux/arm64"), each("podman manifest push --all "+image+" docker://"+image)...),
		},
		{
			"podman push, one platform",
			[]string{"push", "CONTAINER_ENGINE=podman", "PLATFORMS=linux/arm64"},
			append(podmanImages("linux/arm64"), each("podman manifest push --all "+image+" docker://"+image)...),
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(slices.Clone(tt.args), settings...)
			if i > 0 {
				args = append([]string{"-o", "build-linux"}, args...)
			}
			out, got, err := makeRun(t, dir, path, args...)
			if err != nil {
				t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("make %s: engine command lines\n%s\nwant\n%s", strings.Join(args, " "), strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if i == 0 {
				checkBinaries(t, dir)
			}
		})
		if t.Failed() && i == 0 {
			return // the other cases need its binaries
		}
	}
}

// checkBinaries checks that build-linux wrote each binary for each
// platform, for the right machine.
func checkBinaries(t *testing.T, dir string) {
	t.Helper()
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		for _, b := range []string{"auth", "hello", "monolith"} {
			path := filepath.Join(dir, "bin", "linux-"+arch, b)
			f, err := elf.Open(path)
			if err != nil {
				t.Errorf("make push: %s: %v", path, err)
				continue
			}
			if f.Machine != machine {
				t.Errorf("make push: %s is for %v, want %v", path, f.Machine, machine)
			}
			f.Close()
		}
	}
}

// TestBadEngine checks that an engine the Makefile does not know stops
// make before it builds anything, saying which engines it knows.
func TestBadEngine(t *testing.T) {
	for _, target := range []string{"images", "push"} {
		out, got, err := makeRun(t, workDir(t), toolDir(t, "docker", "podman"), target, "CONTAINER_ENGINE=nerdctl")
		if err == nil || !strings.Contains(out, "CONTAINER_ENGINE=nerdctl: want docker or podman") {
			t.Errorf("make %s CONTAINER_ENGINE=nerdctl: error %v, output %q; want an error naming docker and podman", target, err, out)
		}
		if len(got) > 0 || strings.Contains(out, "go build") {
			t.Errorf("make %s CONTAINER_ENGINE=nerdctl ran %q\n%s; want nothing run", target, got, out)
		}
	}
}

// TestDefaultEngine checks CONTAINER_ENGINE's default: docker if a docker
// command is on PATH, else podman.
func TestDefaultEngine(t *testing.T) {
	for _, tt := range []struct {
		engines []string
		want    string
	}{
		{[]string{"docker", "podman"}, "docker"},
		{[]string{"docker"}, "docker"},
		{[]string{"podman"}, "podman"},
	} {
		out, _, err := makeRun(t, workDir(t), toolDir(t, tt.engines...), "help")
		if err != nil {
			t.Fatalf("make help: %v\n%s", err, out)
		}
		if want := regexp.MustCompile(`(?m)^\s+CONTAINER_ENGINE\s+` + tt.want + `$`); !want.MatchString(out) {
			t.Errorf("make help with %q on PATH: output\n%s\nwant CONTAINER_ENGINE %s", tt.engines, out, tt.want)
		}
	}
}

// TestHelp checks that `make help` lists every target with a ## comment,
// that every .PHONY target has one, and that it shows the settings as make
// will use them.
func TestHelp(t *testing.T) {
	makefile := readMakefile(t)
	described := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z0-9][a-z0-9_-]*):[^=].*## `).FindAllStringSubmatch(makefile, -1) {
		described[m[1]] = true
	}
	phony := regexp.MustCompile(`(?m)^\.PHONY:(.*)$`).FindAllStringSubmatch(makefile, -1)
	if len(described) < 20 || len(phony) == 0 {
		t.Fatalf("found %d described targets and %d .PHONY lines in the Makefile, want the many it has", len(described), len(phony))
	}
	for _, p := range phony {
		for _, target := range strings.Fields(p[1]) {
			if !described[target] {
				t.Errorf("Makefile: .PHONY target %s has no ## description, so make help does not list it", target)
			}
		}
	}
	args := []string{"help", "VERSION=9.8.7", "REGISTRY=registry.example/you", "PLATFORMS=linux/arm64", "CONTAINER_ENGINE=podman"}
	out, _, err := makeRun(t, workDir(t), toolDir(t), args...)
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	for target := range described {
		if !regexp.MustCompile(`(?m)^  make ` + regexp.QuoteMeta(target) + ` +\S`).MatchString(out) {
			t.Errorf("make help does not list %s:\n%s", target, out)
		}
	}
	for _, setting := range args[1:] {
		name, value, _ := strings.Cut(setting, "=")
		if !regexp.MustCompile(`(?m)^  ` + name + ` +` + regexp.QuoteMeta(value) + `$`).MatchString(out) {
			t.Errorf("%s: output\n%s\nwant the line %s %s", strings.Join(args, " "), out, name, value)
		}
	}
}

// TestCertsForce checks that `make certs FORCE=1`, which certgen's error
// names, passes -force, and that plain `make certs` does not.
func TestCertsForce(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "go run ./cmd/certgen -out tls"},
		{[]string{"certs", "FORCE=1"}, "go run ./cmd/certgen -out tls -force"},
	} {
		out, _, err := makeRun(t, workDir(t), toolDir(t), append([]string{"-n"}, tt.args...)...)
		// The recipe's last line runs certgen (before it: the HOSTS check).
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := strings.Join(strings.Fields(lines[len(lines)-1]), " "); err != nil || got != tt.want {
			t.Errorf("make -n %s: output %q, error %v; want a last line %q", strings.Join(tt.args, " "), out, err, tt.want)
		}
	}
}
