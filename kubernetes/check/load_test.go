package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	kubeDir = ".."    // kubernetes/, from this package's directory
	repoDir = "../.." // the repository
)

// scheme knows the API groups the manifests use. A kind from any other group
// fails to decode: add its group here when a manifest needs one.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme, autoscalingv2.AddToScheme,
		rbacv1.AddToScheme, // the test cluster's Prometheus (TestClusterPrometheusMatchesPolicy)
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict is the API server's strict decoding: unknown, misspelled or
// wrongly-cased fields and duplicate keys are errors. (sigs.k8s.io/yaml's
// UnmarshalStrict matches field names case-insensitively.)
var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// doc is one YAML document of a file under kubernetes/.
type doc struct {
	file string // relative to kubernetes/, with forward slashes
	n    int    // the document's position in the file, from 1
	data []byte
}

func (d doc) String() string { return fmt.Sprintf("%s (document %d)", d.file, d.n) }

// object is a decoded document.
type object struct {
	doc
	obj runtime.Object
}

func (o object) kind() string { return o.obj.GetObjectKind().GroupVersionKind().Kind }

func (o object) name() string {
	m, err := metaOf(o.obj)
	if err != nil {
		return "?"
	}
	return m.Name
}

func metaOf(obj runtime.Object) (*metav1.ObjectMeta, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.ObjectMeta, nil
	case *corev1.Service:
		return &o.ObjectMeta, nil
	case *appsv1.Deployment:
		return &o.ObjectMeta, nil
	case *policyv1.PodDisruptionBudget:
		return &o.ObjectMeta, nil
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &o.ObjectMeta, nil
	case *networkingv1.NetworkPolicy:
		return &o.ObjectMeta, nil
	case *corev1.ConfigMap:
		return &o.ObjectMeta, nil
	case *corev1.Secret:
		return &o.ObjectMeta, nil
	}
	return nil, fmt.Errorf("unexpected type %T", obj)
}

// splitDocs returns the non-empty YAML documents in data.
func splitDocs(file string, data []byte) ([]doc, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []doc
	for n := 1; ; n++ {
		b, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		j, err := yaml.YAMLToJSON(b)
		if err != nil {
			return nil, fmt.Errorf("%s (document %d): %w", file, n, err)
		}
		if string(bytes.TrimSpace(j)) == "null" { // only comments
			n--
			continue
		}
		docs = append(docs, doc{file: file, n: n, data: b})
	}
}

// manifestFiles lists the object files under kubernetes/: every .yaml file
// except the kustomizations (base/, overlays/), the patches, the components
// (partial objects, checked rendered: TestUsersFileComponent) and this module.
func manifestFiles() ([]string, error) {
	var files []string
	err := filepath.WalkDir(kubeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kubeDir, path) // path is under kubeDir
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "check" || rel == "patches" || rel == "components" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(rel, ".yaml") && d.Name() != "kustomization.yaml" {
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}

// decodeFile reads and strictly decodes every document of a file under kubernetes/.
func decodeFile(file string) ([]object, error) {
	data, err := os.ReadFile(filepath.Join(kubeDir, file))
	if err != nil {
		return nil, err
	}
	return decodeDocs(file, data)
}

func decodeDocs(file string, data []byte) ([]object, error) {
	docs, err := splitDocs(file, data)
	if err != nil {
		return nil, err
	}
	var objs []object
	var errs []error
	for _, d := range docs {
		obj, _, err := strict.Decode(d.data, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", d, err))
			continue
		}
		objs = append(objs, object{doc: d, obj: obj})
	}
	return objs, errors.Join(errs...)
}

var loadObjects = sync.OnceValues(func() ([]object, error) {
	files, err := manifestFiles()
	if err != nil {
		return nil, err
	}
	var all []object
	var errs []error
	for _, f := range files {
		objs, err := decodeFile(f)
		errs = append(errs, err)
		all = append(all, objs...)
	}
	return all, errors.Join(errs...)
})

// objects returns every object under kubernetes/, failing the test if any
// document does not decode.
func objects(t *testing.T) []object {
	t.Helper()
	objs, err := loadObjects()
	if err != nil {
		t.Fatalf("decoding the manifests: %v", err)
	}
	return objs
}

// ofType returns the objects of type T with their documents.
func ofType[T runtime.Object](objs []object) []typed[T] {
	var out []typed[T]
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, typed[T]{doc: o.doc, v: v})
		}
	}
	return out
}

type typed[T any] struct {
	doc
	v T
}

// pod is a pod template: a Deployment's, or a bare Pod's.
type pod struct {
	file       string // the manifest, relative to kubernetes/
	owner      string // "Deployment/hello" or "Pod/monolith"
	name       string // the owner's name
	labels     map[string]string
	meta       metav1.ObjectMeta
	spec       corev1.PodSpec
	deployment *appsv1.Deployment // nil for a bare Pod
}

func (p pod) String() string { return p.file + " " + p.owner }

func pods(t *testing.T) []pod {
	t.Helper()
	out := podsOf(objects(t))
	if len(out) == 0 {
		t.Fatal("no pod templates found")
	}
	return out
}

// podsOf returns the pod templates of objs.
func podsOf(objs []object) []pod {
	var out []pod
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, pod{file: o.file, owner: "Deployment/" + v.Name, name: v.Name,
				labels: v.Spec.Template.Labels, meta: v.Spec.Template.ObjectMeta, spec: v.Spec.Template.Spec, deployment: v})
		case *corev1.Pod:
			out = append(out, pod{file: o.file, owner: "Pod/" + v.Name, name: v.Name,
				labels: v.Labels, meta: v.ObjectMeta, spec: v.Spec})
		}
	}
	return out
}

// selects reports whether a label selector (nil: nothing) selects set.
func selects(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(set))
}

// containerPort returns the port named name in the pod's containers.
func containerPort(p pod, name string) (corev1.ContainerPort, corev1.Container, bool) {
	for _, c := range p.spec.Containers {
		for _, port := range c.Ports {
			if port.Name == name {
				return port, c, true
			}
		}
	}
	return corev1.ContainerPort{}, corev1.Container{}, false
}

// envValue returns the literal value of an environment variable.
func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// deploymentGVK is what a patch under patches/ is decoded as.
var deploymentGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
