package check

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlayNames are the providers kubernetes/overlays must have.
var overlayNames = []string{"eks", "gke", "local"}

// placeholder is the registry the committed manifests name.
const placeholder = "ghcr.io/example/app"

// kustomizeHelperEnv makes the test binary act as `kubectl kustomize`, and
// templateHelperEnv as kubectl's -o go-template-file printer (see TestMain):
// the fake kubectl of the deploy.sh tests renders with the same kustomize
// library kubectl embeds, and prints templates as kubectl does.
const (
	kustomizeHelperEnv = "CHECK_KUSTOMIZE_HELPER"
	templateHelperEnv  = "CHECK_TEMPLATE_HELPER"
	reloadHelperEnv    = "CHECK_RELOAD_HELPER" // a pod's "keys reloaded" log line: rotate_test.go
)

func TestMain(m *testing.M) {
	if os.Getenv(kustomizeHelperEnv) == "1" {
		os.Exit(kustomizeMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	if os.Getenv(templateHelperEnv) == "1" {
		os.Exit(templateMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if os.Getenv(reloadHelperEnv) == "1" {
		os.Exit(reloadMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if configuredDir != "" {
		os.RemoveAll(configuredDir)
	}
	if keysBuild.dir != "" {
		os.RemoveAll(keysBuild.dir)
	}
	os.Exit(code)
}

// kustomizeMain is `kubectl kustomize --load-restrictor LoadRestrictionsNone DIR`.
func kustomizeMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 3 || args[0] != "--load-restrictor" || args[1] != "LoadRestrictionsNone" {
		fmt.Fprintf(stderr, "kustomize helper: want --load-restrictor LoadRestrictionsNone DIR, got %q\n", args)
		return 2
	}
	out, err := kustomize(args[2])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	stdout.Write(out)
	return 0
}

// templateMain is `kubectl get … -o go-template-file=FILE` on the JSON of stdin.
func templateMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	data, err := io.ReadAll(stdin)
	if err == nil && len(args) != 1 {
		err = fmt.Errorf("template helper: want FILE, got %q", args)
	}
	var out string
	if err == nil {
		out, err = goTemplate(args[0], data)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	io.WriteString(stdout, out)
	return 0
}

// kustomize builds dir as deploy.sh does: kubectl kustomize with
// --load-restrictor LoadRestrictionsNone (the base generates from files
// outside its directory).
func kustomize(dir string) ([]byte, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsNone
	res, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return res.AsYaml()
}

// build runs kustomize on dir and strictly decodes what it renders.
func build(t *testing.T, dir string) []object {
	t.Helper()
	out, err := kustomize(dir)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeDocs("kustomize build "+filepath.Base(dir), out)
	if err != nil {
		t.Fatalf("decoding the output of kustomize build %s: %v", dir, err)
	}
	return objs
}

// repoCopy copies what a deploy reads to a temporary directory (see
// copyRepo) and returns the copy's root.
func repoCopy(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if err := copyRepo(dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// copyRepo copies kubernetes/ (but this module), nginx/, the files of
// frontend/ and the Makefile into dst, with a stand-in tls/: make certs is
// not run here, and kustomize does not parse the PEM files.
func copyRepo(dst string) error {
	copyTree := func(rel string, skip func(d fs.DirEntry) bool) error {
		src := filepath.Join(repoDir, rel)
		return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != src && skip(d) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			r, _ := filepath.Rel(repoDir, path) // path is under repoDir
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, r), 0o755)
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, r), data, info.Mode().Perm())
		})
	}
	steps := []struct {
		rel  string
		skip func(fs.DirEntry) bool
	}{
		{"kubernetes", func(d fs.DirEntry) bool { return d.IsDir() && d.Name() == "check" }},
		{"nginx", func(fs.DirEntry) bool { return false }},
		{"frontend", func(d fs.DirEntry) bool { return d.IsDir() }},
		{"Makefile", func(fs.DirEntry) bool { return false }},
	}
	for _, s := range steps {
		if err := copyTree(s.rel, s.skip); err != nil {
			return fmt.Errorf("copying %s: %w", s.rel, err)
		}
	}
	if err := os.Mkdir(filepath.Join(dst, "tls"), 0o755); err != nil {
		return err
	}
	for _, f := range []string{"cert.pem", "key.pem", "ca.pem", "ca-key.pem"} {
		if err := os.WriteFile(filepath.Join(dst, "tls", f), []byte("stand-in "+f), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// testRegistry is what the tests configure with make set-registry.
const testRegistry = "registry.example/team"

// configured is one copy of the repository after `make set-registry
// REGISTRY=registry.example/team`, shared by the tests and removed by
// TestMain.
var configured = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "check-configured-")
	if err != nil {
		return "", err
	}
	configuredDir = dir
	if err := copyRepo(dir); err != nil {
		return "", err
	}
	if out, err := runDeploySh(dir, nil, "set-registry", testRegistry); err != nil {
		return "", fmt.Errorf("deploy.sh set-registry %s: %v\n%s", testRegistry, err, out)
	}
	return dir, nil
})

var configuredDir string // for TestMain's cleanup

// configuredRepo returns the configured copy's root.
func configuredRepo(t *testing.T) string {
	t.Helper()
	dir, err := configured()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runDeploySh runs root's kubernetes/deploy.sh with args and extra
// environment variables, and returns its combined output.
func runDeploySh(root string, env []string, args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(root, "kubernetes", "deploy.sh")}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readKustomization(t *testing.T, dir string) types.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return k
}

// TestKustomize builds kubernetes/base and checks that it renders exactly
// the objects of the files it lists plus the generated ones, that the
// frontend names the generated objects, and that the UI generator lists
// every file of frontend/.
func TestKustomize(t *testing.T) {
	root := repoCopy(t)
	baseDir := filepath.Join(root, "kubernetes", "base")
	k := readKustomization(t, baseDir)
	got := build(t, baseDir)
	var want []string
	for _, f := range k.Resources {
		rel, ok := strings.CutPrefix(f, "../")
		if !ok {
			t.Errorf("base: resource %s: want a lesson file under kubernetes/ (../…)", f)
			continue
		}
		objs, err := decodeFile(rel)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			want = append(want, o.kind()+"/"+o.name())
		}
	}
	generated := map[string]string{} // kind/name -> name with hash
	for _, g := range k.ConfigMapGenerator {
		want = append(want, "ConfigMap/"+g.Name)
		generated["ConfigMap/"+g.Name] = ""
	}
	for _, g := range k.SecretGenerator {
		want = append(want, "Secret/"+g.Name)
		generated["Secret/"+g.Name] = ""
	}
	var names []string
	for _, o := range got {
		name := o.name()
		for id := range generated {
			kind, base, _ := strings.Cut(id, "/")
			if o.kind() == kind && strings.HasPrefix(name, base+"-") {
				generated[id] = name
				name = base
			}
		}
		names = append(names, o.kind()+"/"+name)
	}
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("kustomize build kubernetes/base renders %q, want %q", names, want)
	}
	for id, name := range generated {
		if name == "" {
			t.Errorf("%s: not generated with a hash suffix", id)
		}
	}
	for _, f := range []string{"../deployments/auth.yaml", "../deployments/hello.yaml", "../deployments/frontend.yaml", "../networkpolicies.yaml"} {
		if !slices.Contains(k.Resources, f) {
			t.Errorf("base: resources lacks %s", f)
		}
	}
	if len(k.Images) > 0 {
		t.Errorf("base: images %v: the registry is set in the files by make set-registry, so the lesson files agree", k.Images)
	}

	// The frontend mounts the generated objects, by their hashed names.
	for _, o := range got {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok || d.Name != "frontend" {
			continue
		}
		mounted := map[string]bool{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				mounted["ConfigMap/"+v.ConfigMap.Name] = true
			case v.Secret != nil:
				mounted["Secret/"+v.Secret.SecretName] = true
			}
		}
		for id, name := range generated {
			kind, _, _ := strings.Cut(id, "/")
			if !mounted[kind+"/"+name] {
				t.Errorf("deployment frontend does not mount %s %s: a changed file would not roll it", kind, name)
			}
		}
	}

	// Every file at the top of frontend/ is in the UI's ConfigMap.
	entries, err := os.ReadDir(filepath.Join(repoDir, "frontend"))
	if err != nil {
		t.Fatal(err)
	}
	var ui []string
	for _, g := range k.ConfigMapGenerator {
		if g.Name == "frontend-ui" {
			for _, f := range g.FileSources {
				ui = append(ui, filepath.Base(f))
			}
		}
	}
	for _, e := range entries {
		if !e.IsDir() && !slices.Contains(ui, e.Name()) {
			t.Errorf("base: configMapGenerator frontend-ui lacks ../../frontend/%s: /ui/%s would be missing", e.Name(), e.Name())
		}
	}

	// The TLS Secret holds the certificate and key, never the CA's key.
	for _, o := range got {
		if s, ok := o.obj.(*corev1.Secret); ok {
			if keys := sortedKeys(s.Data); !slices.Equal(keys, []string{"cert.pem", "key.pem"}) {
				t.Errorf("generated secret %s has keys %q, want cert.pem and key.pem only", s.Name, keys)
			}
		}
	}
}

// TestOverlaysExist checks the providers' overlays: each builds on the
// base and nothing else.
func TestOverlaysExist(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(kubeDir, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.IsDir() {
			got = append(got, e.Name())
		}
	}
	if !slices.Equal(got, overlayNames) {
		t.Errorf("kubernetes/overlays has %q, want %q", got, overlayNames)
	}
	for _, name := range got {
		k := readKustomization(t, filepath.Join(kubeDir, "overlays", name))
		if !slices.Equal(k.Resources, []string{"../../base"}) {
			t.Errorf("overlay %s: resources %q, want the base only (../../base)", name, k.Resources)
		}
		if len(k.Images) > 0 {
			t.Errorf("overlay %s: images %v: the registry is set in the files by make set-registry", name, k.Images)
		}
	}
}
