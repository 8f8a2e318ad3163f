package check

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/types"
)

// fakeKubectl stands in for kubectl and a cluster where nothing exists
// yet (or, with FAKE_JWT_EXISTS set, only the JWT Secret). It logs each
// call's arguments (each followed by 0x1f, one call a line) with, for each
// --from-file=KEY=PATH, the file's size, and for apply the kinds it read
// on stdin. `kustomize` renders with the test binary (TestMain), the same
// kustomize library kubectl embeds. Rollouts are complete at once, unless
// FAKE_PODS names a pod list (JSON): then they never complete, and `get
// pods -o go-template-file` prints that list through the test binary.
const fakeKubectl = `#!/usr/bin/env bash
line=
for a in "$@"; do
	line+="$a"$'\037'
	case $a in
	--from-file=*=*) p=${a#--from-file=}; p=${p#*=}; line+="size=$(wc -c <"$p" | tr -d ' ')"$'\037' ;;
	esac
done
case " $* " in
*" kustomize "*) printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; shift; CHECK_KUSTOMIZE_HELPER=1 exec "$FAKE_KUSTOMIZE" "$@" ;;
*" apply "*" -f - "*) line+="stdin=$(grep -h '^kind:' | tr '\n' ' ')"$'\037' ;;
esac
printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG" # one write: the two ends of a pipe run at once
case " $* " in
*" apply "*) echo "object/fake configured" ;;
*" --dry-run=client "*) for a in "$@"; do case $a in secret) echo "kind: Secret"; break ;; configmap) echo "kind: ConfigMap"; break ;; esac; done ;;
*" get secret "*) if [[ -n ${FAKE_JWT_EXISTS:-} ]]; then echo secret/jwt-secret; fi ;;
*" rollout status "*) if [[ -n ${FAKE_PODS:-} ]]; then echo "Waiting for rollout to finish: 0 of 1 updated replicas are available..."; else echo "deployment successfully rolled out"; fi ;;
*" get deployment "*) echo -n "app=hello,track=stable," ;;
*" get pods "*) for a in "$@"; do case $a in go-template-file=*) CHECK_TEMPLATE_HELPER=1 exec "$FAKE_KUSTOMIZE" "${a#go-template-file=}" <"$FAKE_PODS" ;; esac; done ;;
*" logs "*) printf 'panic: boom\ngoroutine 1 [running]:\n' ;;
*" get events "*) echo "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503" ;;
*" config view "*) echo -n "${FAKE_CONTEXT_NAMESPACE:-}" ;;
esac
`

// created is what one `deploy.sh secrets` run creates: for each
// "secret/NAME" or "configmap/NAME", its keys and where each key's value
// comes from (a file's path, or "literal").
type created map[string]map[string]string

// fakeCluster runs root's deploy.sh with args against the fake kubectl
// and returns the calls it made, each split into its arguments.
func fakeCluster(t *testing.T, root string, env []string, args ...string) (calls [][]string, out string, err error) {
	t.Helper()
	dir := t.TempDir()
	kubectl := filepath.Join(dir, "kubectl")
	if err := os.WriteFile(kubectl, []byte(fakeKubectl), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log")
	env = append([]string{"KUBECTL=" + kubectl, "FAKE_KUBECTL_LOG=" + log, "FAKE_KUSTOMIZE=" + self}, env...)
	out, err = runDeploySh(root, env, args...)
	data, rerr := os.ReadFile(log)
	if rerr != nil && !os.IsNotExist(rerr) {
		t.Fatal(rerr)
	}
	for line := range strings.Lines(string(data)) {
		calls = append(calls, strings.Split(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\x1f"), "\x1f"))
	}
	return calls, out, err
}

// runSecrets runs `deploy.sh secrets` against the fake kubectl, in a copy
// of the repository; the paths it returns are the repository's.
func runSecrets(t *testing.T, jwtExists bool) (created, [][]string) {
	t.Helper()
	root := repoCopy(t)
	env := []string{"NAMESPACE=test"}
	if jwtExists {
		env = append(env, "FAKE_JWT_EXISTS=1")
	}
	calls, out, err := fakeCluster(t, root, env, "secrets")
	if err != nil {
		t.Fatalf("deploy.sh secrets: %v\n%s", err, out)
	}
	got := created{}
	for _, args := range calls {
		i := slices.Index(args, "create")
		if i < 0 || i+2 >= len(args) {
			continue
		}
		var name string
		switch args[i+1] {
		case "secret":
			name = "secret/" + args[i+3] // create secret generic NAME
		case "configmap":
			name = "configmap/" + args[i+2]
		default:
			continue
		}
		keys := map[string]string{}
		for j, a := range args {
			if kv, ok := strings.CutPrefix(a, "--from-file="); ok {
				k, path, _ := strings.Cut(kv, "=")
				if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
					path = filepath.Join(repoDir, rel)
				}
				keys[k] = path
				if j+1 < len(args) && strings.HasPrefix(args[j+1], "size=") {
					keys[k+" size"] = strings.TrimPrefix(args[j+1], "size=")
				}
			}
			if kv, ok := strings.CutPrefix(a, "--from-literal="); ok {
				k, _, _ := strings.Cut(kv, "=")
				keys[k] = "literal"
			}
		}
		got[name] = keys
	}
	return got, calls
}

var secretsRun struct {
	sync.Mutex
	got created
}

// deployScriptCreates returns what the pods may refer to: what `deploy.sh
// secrets` creates (run once), and what kubernetes/base generates, by the
// generator's name (kustomize adds the hash and renames the references).
func deployScriptCreates(t *testing.T) created {
	t.Helper()
	secretsRun.Lock()
	defer secretsRun.Unlock()
	if secretsRun.got == nil {
		got, _ := runSecrets(t, false)
		base := filepath.Join(kubeDir, "base")
		k := readKustomization(t, base)
		add := func(kind string, g types.GeneratorArgs) {
			keys := map[string]string{}
			for _, f := range g.FileSources {
				key, path, ok := strings.Cut(f, "=")
				if !ok {
					key, path = filepath.Base(f), f
				}
				keys[key] = filepath.Join(base, path)
			}
			got[kind+"/"+g.Name] = keys
		}
		for _, g := range k.ConfigMapGenerator {
			add("configmap", g.GeneratorArgs)
		}
		for _, g := range k.SecretGenerator {
			add("secret", g.GeneratorArgs)
		}
		secretsRun.got = got
	}
	return secretsRun.got
}

// TestDeployScriptSecrets checks what `make secrets` creates: the TLS pair
// without the CA's key and nginx/proxy.conf.template for the lessons' pods, applied
// server-side; a JWT key long enough for the services, made with kubectl
// create (apply would copy it into an annotation); and no new JWT key when
// one exists.
func TestDeployScriptSecrets(t *testing.T) {
	got, calls := runSecrets(t, false)
	tls := got["secret/tls-certs"]
	if tls == nil || !strings.HasSuffix(tls["cert.pem"], "/tls/cert.pem") || !strings.HasSuffix(tls["key.pem"], "/tls/key.pem") || len(tls) != 4 {
		t.Errorf("secret/tls-certs keys %v, want exactly cert.pem and key.pem from tls/", tls)
	}
	jwt := got["secret/jwt-secret"]
	if n, err := strconv.Atoi(jwt["JWT_SECRET size"]); err != nil || n < 32 {
		t.Errorf("secret/jwt-secret key JWT_SECRET: %d bytes (%v), want at least 32", n, err)
	}
	if p := got["configmap/nginx-proxy-conf"]["proxy.conf.template"]; !strings.HasSuffix(p, "nginx/proxy.conf.template") {
		t.Errorf("configmap/nginx-proxy-conf from %q, want nginx/proxy.conf.template", p)
	}
	for _, args := range calls {
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--from-literal") }) {
			t.Errorf("deploy.sh runs kubectl %q: a literal shows in the process list", args)
		}
		create := slices.Index(args, "create")
		switch {
		case create >= 0 && slices.Contains(args, "jwt-secret"):
			if slices.Contains(args, "--dry-run=client") {
				t.Errorf("deploy.sh runs kubectl %q: want jwt-secret made by kubectl create itself, not rendered for apply", args)
			}
		case create >= 0 && (args[create+1] == "secret" || args[create+1] == "configmap"):
			if !slices.Contains(args, "--dry-run=client") {
				t.Errorf("deploy.sh runs kubectl %q: want create --dry-run=client piped to apply --server-side", args)
			}
		case slices.Contains(args, "apply") && slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "kind: Secret") }):
			if !slices.Contains(args, "--server-side") {
				t.Errorf("deploy.sh runs kubectl %q on a Secret: want --server-side, or the key lands in the last-applied-configuration annotation", args)
			}
		}
	}

	again, _ := runSecrets(t, true)
	if _, ok := again["secret/jwt-secret"]; ok {
		t.Error("deploy.sh secrets with secret/jwt-secret present made a new one: it must keep the key")
	}
}

// TestSetRegistry runs make set-registry's script on a copy of the
// repository: afterwards no manifest names the placeholder, every overlay
// deploys the new registry's images, running it again with another
// registry moves them all again, and bad values are refused.
func TestSetRegistry(t *testing.T) {
	root := repoCopy(t)
	imagesUnder := func(registry string) {
		t.Helper()
		for _, name := range overlayNames {
			out, err := kustomize(filepath.Join(root, "kubernetes", "overlays", name))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeDocs(name, out)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range podsOf(objs) {
				for _, c := range p.spec.Containers {
					if !isNginx(c) && !strings.HasPrefix(c.Image, registry+"/") {
						t.Errorf("overlay %s: %v: image %s, want %s/…", name, p, c.Image, registry)
					}
				}
			}
		}
		err := filepath.WalkDir(filepath.Join(root, "kubernetes"), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for line := range strings.Lines(string(data)) {
				if strings.Contains(line, "image: ") && !strings.Contains(line, "image: "+registry+"/") && !strings.Contains(line, "nginx") {
					t.Errorf("%s: %s", path, strings.TrimSpace(line))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, registry := range []string{"us-docker.pkg.dev/my-project/ud615", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ud615", "localhost:5000/ud615"} {
		for range 2 { // the second run changes nothing
			if out, err := runDeploySh(root, nil, "set-registry", registry); err != nil {
				t.Fatalf("deploy.sh set-registry %s: %v\n%s", registry, err, out)
			}
		}
		imagesUnder(registry)
	}
	for _, bad := range []string{"", placeholder, "https://registry.example/x", "registry.example/x/", "Registry.Example/x", "registry.example/x:1.0"} {
		out, err := runDeploySh(root, nil, "set-registry", bad)
		if err == nil || !strings.Contains(out, "set-registry") && !strings.Contains(out, "REGISTRY") {
			t.Errorf("deploy.sh set-registry %q: error %v, output %q: want a refusal that says what to set", bad, err, out)
		}
	}
	imagesUnder("localhost:5000/ud615") // unchanged by the refusals
}

// TestDeployRefusesPlaceholder runs `make deploy` on the committed files:
// it must refuse before touching the cluster, and say what to run.
func TestDeployRefusesPlaceholder(t *testing.T) {
	root := repoCopy(t)
	calls, out, err := fakeCluster(t, root, []string{"NAMESPACE=ud615"}, "deploy", "local")
	if err == nil || !strings.Contains(out, "make set-registry REGISTRY=") || !strings.Contains(out, placeholder) {
		t.Errorf("deploy.sh deploy local with the placeholder registry: error %v, output %q: want a refusal naming make set-registry", err, out)
	}
	for _, args := range calls {
		if !slices.Contains(args, "kustomize") {
			t.Errorf("deploy.sh deploy with the placeholder ran kubectl %q: want nothing done to the cluster", args)
		}
	}
	for _, args := range [][]string{{"deploy"}, {"deploy", "nosuch"}} {
		_, out, err := fakeCluster(t, root, nil, args...)
		if err == nil || !strings.Contains(out, "OVERLAY") || !strings.Contains(out, "gke") {
			t.Errorf("deploy.sh %q: error %v, output %q: want a refusal listing the overlays", args, err, out)
		}
	}
	if out, err := runDeploySh(root, nil, "set-registry", testRegistry); err != nil {
		t.Fatalf("deploy.sh set-registry: %v\n%s", err, out)
	}
	if err := os.RemoveAll(filepath.Join(root, "tls")); err != nil {
		t.Fatal(err)
	}
	if _, out, err := fakeCluster(t, root, nil, "deploy", "gke"); err == nil || !strings.Contains(out, "make certs") {
		t.Errorf("deploy.sh deploy gke without tls/: error %v, output %q: want a refusal naming make certs", err, out)
	}
}

// TestDeployExplains runs `make deploy` against pods that do not become
// ready: before it gives up it says, per pod, why, with what a learner
// needs next (the image, the last log lines, the scheduler's message, the
// latest warning event).
func TestDeployExplains(t *testing.T) {
	root := configuredRepo(t)
	pods := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(pods, podList(t, notReadyPods()), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, err := fakeCluster(t, root, []string{"NAMESPACE=ud615", "FAKE_PODS=" + pods, "ROLLOUT_TIMEOUT=1"}, "deploy", "local")
	if err == nil {
		t.Fatalf("deploy.sh deploy with pods never ready: succeeded\n%s", out)
	}
	for _, want := range []string{
		"not rolled out within 1s",
		"pod pull container hello: ImagePullBackOff: image registry.example/team/hello:9.9.9",
		"pod crash container hello: CrashLoopBackOff: image registry.example/team/hello:9.9.9",
		"      | panic: boom",
		"pod unscheduled: Pending: Unschedulable: 0/3 nodes are available: 3 node(s) had untolerated taint",
		"pod mount container hello: ContainerCreating",
		"pod probe container nginx: NotReady: running, 2 restarts",
		"      event Unhealthy: Readiness probe failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy.sh deploy with pods never ready: output lacks %q:\n%s", want, out)
		}
	}
	for _, quiet := range []string{"pod ready", "pod old"} {
		if strings.Contains(out, quiet) {
			t.Errorf("deploy.sh deploy: output mentions %q (ready or terminating):\n%s", quiet, out)
		}
	}
}

// TestDeploy runs `make deploy` after make set-registry against the fake
// kubectl: the generated TLS Secret is applied server-side (no key in an
// annotation) and the rest client-side, as the tutorial's kubectl apply
// commands expect; the JWT Secret is created, never applied; the namespace
// "default" (the context's, or none) is never relabelled, another one is
// made to enforce the restricted profile.
func TestDeploy(t *testing.T) {
	root := configuredRepo(t)
	tests := []struct {
		env       []string
		wantLabel string // the namespace labelled, "" for none
	}{
		{nil, ""},
		{[]string{"NAMESPACE=default"}, ""},
		{[]string{"FAKE_CONTEXT_NAMESPACE=ud615"}, "ud615"},
		{[]string{"NAMESPACE=shop"}, "shop"},
	}
	for _, tt := range tests {
		calls, out, err := fakeCluster(t, root, tt.env, "deploy", "local")
		if err != nil {
			t.Fatalf("deploy.sh deploy local (%q): %v\n%s", tt.env, err, out)
		}
		var labelled []string
		applies := map[string]bool{}
		for _, args := range calls {
			if i := slices.Index(args, "label"); i >= 0 && i+2 < len(args) && args[i+1] == "namespace" {
				labelled = append(labelled, args[i+2])
			}
			if slices.Contains(args, "jwt-secret") && slices.Contains(args, "create") && slices.Contains(args, "--dry-run=client") {
				t.Errorf("deploy.sh runs kubectl %q: want jwt-secret made by kubectl create itself", args)
			}
			if i := slices.Index(args, "apply"); i >= 0 && slices.Contains(args, "-f") {
				sel := ""
				if j := slices.Index(args, "-l"); j >= 0 {
					sel = args[j+1]
				}
				applies[fmt.Sprintf("server-side=%v %s", slices.Contains(args, "--server-side"), sel)] = true
			}
		}
		want := []string{}
		if tt.wantLabel != "" {
			want = []string{tt.wantLabel}
		}
		if !slices.Equal(labelled, want) && !(len(labelled) == 0 && len(want) == 0) {
			t.Errorf("deploy.sh deploy (%q) labelled namespaces %q, want %q", tt.env, labelled, want)
		}
		for _, a := range []string{"server-side=true app.kubernetes.io/component=frontend-tls", "server-side=false app.kubernetes.io/component!=frontend-tls"} {
			if !applies[a] {
				t.Errorf("deploy.sh deploy (%q): no kubectl apply %s (applies: %v)", tt.env, a, sortedKeys(applies))
			}
		}
	}
}

// TestConfigReferences checks that every Secret, ConfigMap and key a pod
// refers to is one `make secrets` creates, or is marked optional.
func TestConfigReferences(t *testing.T) {
	made := deployScriptCreates(t)
	check := func(p pod, kind, name, key string, optional *bool) {
		t.Helper()
		keys, ok := made[kind+"/"+name]
		if !ok {
			if optional == nil || !*optional {
				t.Errorf("%v: %s %s is not made by deploy.sh secrets: create it there, or mark the reference optional", p, kind, name)
			}
			return
		}
		if _, ok := keys[key]; key != "" && !ok {
			t.Errorf("%v: %s %s has no key %s (it has %v)", p, kind, name, key, sortedKeys(keys))
		}
	}
	refs := 0
	for _, p := range pods(t) {
		for _, v := range p.spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				refs++
				check(p, "configmap", v.ConfigMap.Name, "", v.ConfigMap.Optional)
				for _, it := range v.ConfigMap.Items {
					check(p, "configmap", v.ConfigMap.Name, it.Key, v.ConfigMap.Optional)
				}
			case v.Secret != nil:
				refs++
				check(p, "secret", v.Secret.SecretName, "", v.Secret.Optional)
				for _, it := range v.Secret.Items {
					check(p, "secret", v.Secret.SecretName, it.Key, v.Secret.Optional)
				}
			case v.EmptyDir != nil:
				if v.EmptyDir.SizeLimit == nil {
					t.Errorf("%v: emptyDir %s without sizeLimit", p, v.Name)
				}
			default:
				t.Errorf("%v: volume %s: only configMap, secret and emptyDir volumes are expected", p, v.Name)
			}
		}
		for _, c := range p.spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				refs++
				switch r := e.ValueFrom; {
				case r.SecretKeyRef != nil:
					check(p, "secret", r.SecretKeyRef.Name, r.SecretKeyRef.Key, r.SecretKeyRef.Optional)
				case r.ConfigMapKeyRef != nil:
					check(p, "configmap", r.ConfigMapKeyRef.Name, r.ConfigMapKeyRef.Key, r.ConfigMapKeyRef.Optional)
				}
			}
			if len(c.EnvFrom) > 0 {
				t.Errorf("%v: envFrom: name each variable instead", p)
			}
		}
	}
	if refs == 0 {
		t.Fatal("no references found")
	}
}

// mountOf returns the volume mounted at path in c, if any.
func mountOf(p pod, c corev1.Container, path string) (corev1.Volume, bool) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			for _, v := range p.spec.Volumes {
				if v.Name == m.Name {
					return v, true
				}
			}
		}
	}
	return corev1.Volume{}, false
}
