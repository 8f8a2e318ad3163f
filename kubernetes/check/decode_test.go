package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestManifestsDecodeStrictly decodes every document of every manifest into
// the k8s.io/api types with the API server's strict rules.
func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := manifestFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("manifestFiles() = %q, want the course's pods/, services/ and deployments/ files", files)
	}
	for _, f := range files {
		objs, err := decodeFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", f)
		}
		for _, o := range objs {
			if o.name() == "" {
				t.Errorf("%v: %s without metadata.name", o.doc, o.kind())
			}
		}
	}
}

// TestPatchesDecodeStrictly decodes the patches under patches/ as partial
// Deployments and checks that each names a container of the Deployment it
// patches.
func TestPatchesDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(kubeDir, "patches", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no patches under kubernetes/patches (err %v)", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := strict.Decode(data, &deploymentGVK, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		patch := obj.(*appsv1.Deployment)
		// patches/hello-2.0.0.yaml patches deployments/hello.yaml.
		target := strings.SplitN(strings.TrimSuffix(filepath.Base(f), ".yaml"), "-", 2)[0]
		objs, err := decodeFile("deployments/" + target + ".yaml")
		if err != nil {
			t.Errorf("%s: the patched deployment: %v", f, err)
			continue
		}
		d := objs[0].obj.(*appsv1.Deployment)
		for _, pc := range patch.Spec.Template.Spec.Containers {
			found := false
			for _, c := range d.Spec.Template.Spec.Containers {
				found = found || c.Name == pc.Name
			}
			if !found {
				t.Errorf("%s: container %q is not in deployments/%s.yaml: the patch would add a container", f, pc.Name, target)
			}
		}
		for _, labels := range []map[string]string{patch.Labels, patch.Spec.Template.Labels} {
			if labels["version"] == "" || labels["version"] != labels["app.kubernetes.io/version"] {
				t.Errorf("%s: labels %v: want version and app.kubernetes.io/version set and equal", f, labels)
			}
		}
		for _, c := range patch.Spec.Template.Spec.Containers {
			if want := ":" + patch.Spec.Template.Labels["version"]; !strings.HasSuffix(c.Image, want) {
				t.Errorf("%s: image %s, want the tag of the version label (%s)", f, c.Image, want)
			}
		}
	}
}

// TestStrictDecodingRejectsMistakes proves that the decoder the tests use
// catches what a lenient one lets through.
func TestStrictDecodingRejectsMistakes(t *testing.T) {
	const pod = `apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
    - name: c
      image: example.com/c:1.0.0
      ports:
        - %s: 8080
`
	if _, _, err := strict.Decode([]byte(strings.Replace(pod, "%s", "containerPort", 1)), nil, nil); err != nil {
		t.Fatalf("Decode(a valid pod) error = %v, want nil", err)
	}
	tests := []struct {
		field string
		why   string
	}{
		{"containerport", "wrong case"},
		{"ContainerPort", "wrong case"},
		{"containerPorts", "misspelled"},
	}
	for _, tt := range tests {
		_, _, err := strict.Decode([]byte(strings.Replace(pod, "%s", tt.field, 1)), nil, nil)
		if !runtime.IsStrictDecodingError(err) {
			t.Errorf("Decode(a pod with port field %q, %s) error = %v, want a strict decoding error", tt.field, tt.why, err)
		}
	}
	dup := strings.Replace(pod, "%s: 8080", "containerPort: 8080\n          containerPort: 8081", 1)
	if _, _, err := strict.Decode([]byte(dup), nil, nil); err == nil {
		t.Error("Decode(a pod with a duplicate key) error = nil, want an error")
	}
	unknownKind := "apiVersion: v1\nkind: Pdo\nmetadata:\n  name: p\n"
	if _, _, err := strict.Decode([]byte(unknownKind), nil, nil); err == nil {
		t.Error("Decode(kind: Pdo) error = nil, want an error")
	}
}
