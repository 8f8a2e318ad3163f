package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// build runs kustomize (the library kubectl apply -k uses) on dir.
func build(t *testing.T, dir string) []object {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeDocs("kustomize build "+dir, out)
	if err != nil {
		t.Fatalf("decoding the output of kustomize build %s: %v", dir, err)
	}
	return objs
}

func readKustomization(t *testing.T) types.Kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kubeDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// TestKustomize builds kubernetes/ and checks that it renders exactly the
// objects of the files it lists, with the images the files name.
func TestKustomize(t *testing.T) {
	k := readKustomization(t)
	got := build(t, kubeDir)
	var want []string
	for _, f := range k.Resources {
		objs, err := decodeFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			want = append(want, o.kind()+"/"+o.name())
		}
	}
	var names []string
	for _, o := range got {
		names = append(names, o.kind()+"/"+o.name())
	}
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("kustomize build renders %q, want %q", names, want)
	}
	for _, f := range []string{"deployments/auth.yaml", "deployments/hello.yaml", "deployments/frontend.yaml", "networkpolicies.yaml"} {
		if !slices.Contains(k.Resources, f) {
			t.Errorf("kustomization.yaml: resources lacks %s", f)
		}
	}
	// The images stanza restates the files' tags: the one place to change them.
	for _, o := range got {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			repo, tag := splitImage(c.Image)
			i := slices.IndexFunc(k.Images, func(im types.Image) bool { return im.Name == repo })
			if i < 0 {
				t.Errorf("kustomization.yaml: images lacks %s (deployment %s)", repo, d.Name)
			} else if k.Images[i].NewTag != tag || k.Images[i].NewName != "" {
				t.Errorf("kustomization.yaml: image %s: newName %q newTag %q, want the files' tag %s and no newName (deploy.sh overlays it)", repo, k.Images[i].NewName, k.Images[i].NewTag, tag)
			}
		}
	}
}

// TestDeployOverlay checks the overlay `make deploy REGISTRY=... VERSION=...`
// applies: kubernetes/ with the app images moved and retagged and their
// version labels following; nginx untouched.
func TestDeployOverlay(t *testing.T) {
	_, binaries := makefile(t)
	dir := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(kubeDir, "deploy.sh"), "overlay", dir)
	cmd.Env = append(os.Environ(), "REGISTRY=registry.example/team", "VERSION=2.3.4")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy.sh overlay: %v\n%s", err, out)
	}
	objs := build(t, dir)
	n := 0
	for _, o := range objs {
		d, ok := o.obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if isNginx(c) {
				if strings.HasPrefix(c.Image, "registry.example/") {
					t.Errorf("overlay: deployment %s: image %s, want nginx untouched", d.Name, c.Image)
				}
				continue
			}
			n++
			repo, tag := splitImage(c.Image)
			b, ok := strings.CutPrefix(repo, "registry.example/team/")
			if !ok || !slices.Contains(binaries, b) || tag != "2.3.4" {
				t.Errorf("overlay: deployment %s: image %s, want registry.example/team/<binary>:2.3.4", d.Name, c.Image)
			}
			for _, l := range []map[string]string{d.Labels, d.Spec.Template.Labels} {
				if l["version"] != "2.3.4" || l["app.kubernetes.io/version"] != "2.3.4" {
					t.Errorf("overlay: deployment %s: labels %v, want version 2.3.4", d.Name, l)
				}
			}
		}
	}
	if n < 2 {
		t.Errorf("overlay: %d app containers, want auth and hello", n)
	}
}
