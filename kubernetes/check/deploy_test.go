package check

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/types"

	"example.com/app/internal/token"
)

// fakeKubectl stands in for kubectl and a cluster where nothing exists
// yet (or only the Secrets FAKE_SECRETS names, space-separated). It logs each
// call's arguments (each followed by 0x1f, one call a line) with, for each
// --from-file=KEY=PATH, the file's size, and for apply the kinds it read
// on stdin. Every HorizontalPodAutoscaler's minReplicas and Deployment's
// replicas are 3; FAKE_LAST_APPLIED names the file view-last-applied prints
// (else the Deployment has none), and set-last-applied logs its stdin, lines
// joined by "|". `kustomize` renders with the test binary (TestMain), the same
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
# With FAKE_STATE, Secrets live there as files, one per Secret (its one
# key), written by create --dry-run (which the scripts pipe to apply).
if [[ -n ${FAKE_STATE:-} ]]; then
	case " $* " in
	*" create secret generic "*" --dry-run=client "*)
		prev= name=
		for a in "$@"; do
			[[ $prev == generic ]] && name=$a
			case $a in --from-file=*=*) p=${a#--from-file=}; cp "${p#*=}" "$FAKE_STATE/$name" ;; esac
			prev=$a
		done ;;
	*" annotate secret "*) for a in "$@"; do case $a in *=*) echo "${a#*=}" >"$FAKE_STATE/$5.since" ;; esac; done ;;
	*" get secret "*" --output name"*) [[ -f $FAKE_STATE/$5 ]] && echo "secret/$5"; printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; exit 0 ;;
	*" get secret "*"jsonpath={.data."*) base64 <"$FAKE_STATE/$5" | tr -d '\n'; printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; exit 0 ;;
	*" get secret "*"jsonpath={.metadata.annotations."*) cat "$FAKE_STATE/$5.since" 2>/dev/null; printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; exit 0 ;;
	*" get pods "*"jsonpath="*) printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; echo "auth-0 auth"; [[ $* == *hello* ]] && echo "hello-0 hello"; exit 0 ;;
	*" get deployment auth "*) printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; echo -n "${FAKE_TOKEN_TTL:-}"; exit 0 ;;
	*" logs "*) printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; CHECK_RELOAD_HELPER=1 exec "$FAKE_KUSTOMIZE" "$FAKE_STATE" "$6" ;;
	esac
fi
case " $* " in
*" kustomize "*) printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; shift; CHECK_KUSTOMIZE_HELPER=1 exec "$FAKE_KUSTOMIZE" "$@" ;;
*" view-last-applied "*) printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG"; [[ -n ${FAKE_LAST_APPLIED:-} ]] || { echo 'Error from server (NotFound)' >&2; exit 1; }; cat "$FAKE_LAST_APPLIED"; exit 0 ;;
*" set-last-applied"*" -f - "*) line+="stdin=$(cat | tr '\n' '|')"$'\037' ;;
*" apply "*" -f - "*) line+="stdin=$(grep -h '^kind:' | tr '\n' ' ')"$'\037' ;;
esac
printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG" # one write: the two ends of a pipe run at once
case " $* " in
*" apply "*) echo "object/fake configured" ;;
*" --dry-run=client "*) for a in "$@"; do case $a in secret) echo "kind: Secret"; break ;; configmap) echo "kind: ConfigMap"; break ;; esac; done ;;
*" get secret "*) for s in ${FAKE_SECRETS:-}; do case " $* " in *" $s "*) echo "secret/$s" ;; esac; done ;;
*" rollout status "*) if [[ -n ${FAKE_PODS:-} ]]; then echo "Waiting for rollout to finish: 0 of 1 updated replicas are available..."; else echo "deployment successfully rolled out"; fi ;;
*" get hpa "*) echo -n 3 ;;
*" get deployment "*"{.spec.replicas}"*) echo -n 3 ;;
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
	env = append([]string{"KUBECTL=" + kubectl, "FAKE_KUBECTL_LOG=" + log, "FAKE_KUSTOMIZE=" + self,
		"KEYS_CMD=" + keysCommand(t), "KEYS_DIR=" + filepath.Join(dir, "keys")}, env...)
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

// keysCommand returns cmd/keys, built once: deploy.sh runs it to make the
// token keys (KEYS_CMD), as make keys does.
func keysCommand(t *testing.T) string {
	t.Helper()
	keysBuild.Do(func() {
		keysBuild.dir, keysBuild.err = os.MkdirTemp("", "check-keys-")
		if keysBuild.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(keysBuild.dir, "keys"), "./cmd/keys")
		cmd.Dir = repoDir
		if out, err := cmd.CombinedOutput(); err != nil {
			keysBuild.err = fmt.Errorf("go build ./cmd/keys: %w\n%s", err, out)
		}
	})
	if keysBuild.err != nil {
		t.Fatal(keysBuild.err)
	}
	return filepath.Join(keysBuild.dir, "keys")
}

var keysBuild struct {
	sync.Once
	dir string
	err error
}

// runSecrets runs `deploy.sh secrets` against the fake kubectl, in a copy
// of the repository, with keys in keysDir (made there if it is empty) and
// the Secrets cluster names existing; the paths it returns are the
// repository's.
func runSecrets(t *testing.T, keysDir string, cluster ...string) (created, [][]string) {
	t.Helper()
	root := repoCopy(t)
	env := []string{"NAMESPACE=test", "KEYS_DIR=" + keysDir, "FAKE_SECRETS=" + strings.Join(cluster, " ")}
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
		// With a users file: what components/users-file mounts.
		keysDir := t.TempDir()
		writeUsersFile(t, keysDir)
		got, _ := runSecrets(t, keysDir)
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

// TestDeployScriptSecrets checks what `make secrets` creates: the token
// keys, made by cmd/keys in keys/ when neither keys/ nor the cluster has
// them, the private key in its own Secret; keys/users when present; the
// TLS pair without the CA's key and nginx/proxy.conf.template for the
// lessons' pods. Every Secret is created or applied server-side, never
// client-side (which copies the data into the last-applied-configuration
// annotation), no key shows in any argument, and existing keys are kept.
func TestDeployScriptSecrets(t *testing.T) {
	keysDir := t.TempDir()
	got, calls := runSecrets(t, keysDir)
	tls := got["secret/tls-certs"]
	if tls == nil || !strings.HasSuffix(tls["cert.pem"], "/tls/cert.pem") || !strings.HasSuffix(tls["key.pem"], "/tls/key.pem") || len(tls) != 4 {
		t.Errorf("secret/tls-certs keys %v, want exactly cert.pem and key.pem from tls/", tls)
	}
	for name, want := range map[string]string{"secret/jwt-signing-key": "jwt-private.pem", "secret/jwt-public-keys": "jwt-public.pem"} {
		if keys := got[name]; keys[want] != filepath.Join(keysDir, want) || len(keys) != 2 {
			t.Errorf("%s keys %v, want exactly %s from %s", name, keys, want, keysDir)
		}
	}
	if _, ok := got["secret/users"]; ok {
		t.Error("deploy.sh secrets without keys/users made secret/users")
	}
	private, err := os.ReadFile(filepath.Join(keysDir, "jwt-private.pem"))
	if err != nil {
		t.Fatalf("deploy.sh secrets made no key pair: %v", err)
	}
	k, err := token.ParsePrivateKey(private)
	if err != nil {
		t.Fatalf("keys/jwt-private.pem: %v", err)
	}
	public, err := os.ReadFile(filepath.Join(keysDir, "jwt-public.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if ks, err := token.ParsePublicKeys(public); err != nil || len(ks) != 1 || ks[0].ID != k.ID {
		t.Errorf("keys/jwt-public.pem: %v, %v; want the signing key's public key", ks, err)
	}
	if p := got["configmap/nginx-proxy-conf"]["proxy.conf.template"]; !strings.HasSuffix(p, "nginx/proxy.conf.template") {
		t.Errorf("configmap/nginx-proxy-conf from %q, want nginx/proxy.conf.template", p)
	}
	checkSecretCalls(t, calls, private)

	// keys/users present: secret/users from it.
	writeUsersFile(t, keysDir)
	got, calls = runSecrets(t, keysDir)
	if u := got["secret/users"]; u["users"] != filepath.Join(keysDir, "users") {
		t.Errorf("deploy.sh secrets with keys/users: secret/users keys %v, want users from %s", u, keysDir)
	}
	checkSecretCalls(t, calls, private)

	// Keys on the cluster: kept, whatever keys/ holds (here nothing: no new pair either).
	empty := t.TempDir()
	got, _ = runSecrets(t, empty, "jwt-signing-key", "jwt-public-keys")
	for _, name := range []string{"secret/jwt-signing-key", "secret/jwt-public-keys"} {
		if _, ok := got[name]; ok {
			t.Errorf("deploy.sh secrets with the keys on the cluster made %s: it must keep them", name)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, "jwt-private.pem")); err == nil {
		t.Error("deploy.sh secrets with the keys on the cluster made a key pair in keys/")
	}
	got, _ = runSecrets(t, keysDir, "jwt-signing-key", "jwt-public-keys")
	if _, ok := got["secret/jwt-signing-key"]; ok {
		t.Error("deploy.sh secrets with the keys on the cluster and in keys/ uploaded keys/: it must keep the cluster's")
	}
	// Half a pair on the cluster: refused, with what to do.
	_, out, err := fakeCluster(t, repoCopy(t), []string{"NAMESPACE=test", "KEYS_DIR=" + keysDir, "FAKE_SECRETS=jwt-signing-key"}, "secrets")
	if err == nil || !strings.Contains(out, "kubectl delete secret") {
		t.Errorf("deploy.sh secrets with only jwt-signing-key on the cluster: error %v, output %q; want a refusal saying what to delete", err, out)
	}
}

// checkSecretCalls checks that deploy.sh makes every Secret and ConfigMap
// with create --dry-run=client piped to apply --server-side (or create
// itself), never applies a Secret client-side, and never passes key
// material in an argument (process list, annotations).
func checkSecretCalls(t *testing.T, calls [][]string, private []byte) {
	t.Helper()
	var body []string // the PEM's base64 lines
	for line := range strings.Lines(string(private)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "-----") {
			body = append(body, line)
		}
	}
	if len(body) == 0 {
		t.Fatal("no key material to look for")
	}
	for _, args := range calls {
		for _, a := range args {
			for _, b := range body {
				if strings.Contains(a, b) {
					t.Errorf("deploy.sh runs kubectl %q: an argument holds the private key", args)
				}
			}
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--from-literal") || a == "--save-config" }) {
			t.Errorf("deploy.sh runs kubectl %q: a literal shows in the process list, --save-config writes the annotation", args)
		}
		create := slices.Index(args, "create")
		switch {
		case create >= 0 && create+1 < len(args) && (args[create+1] == "secret" || args[create+1] == "configmap"):
			if !slices.Contains(args, "--dry-run=client") {
				t.Errorf("deploy.sh runs kubectl %q: want create --dry-run=client piped to apply --server-side", args)
			}
		case slices.Contains(args, "apply") && slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "kind: Secret") }):
			if !slices.Contains(args, "--server-side") {
				t.Errorf("deploy.sh runs kubectl %q on a Secret: want --server-side, or the key lands in the last-applied-configuration annotation", args)
			}
		}
	}
}

// writeUsersFile writes dir/users as make users-file does.
func writeUsersFile(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(keysCommand(t), "users", "-out", filepath.Join(dir, "users"), "-force")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keys users: %v\n%s", err, out)
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
// commands expect; the token keys are made and applied server-side (no key
// in an annotation), or kept when the cluster has them; the namespace
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
		keysDir := t.TempDir()
		calls, out, err := fakeCluster(t, root, append(tt.env, "KEYS_DIR="+keysDir), "deploy", "local")
		if err != nil {
			t.Fatalf("deploy.sh deploy local (%q): %v\n%s", tt.env, err, out)
		}
		private, err := os.ReadFile(filepath.Join(keysDir, "jwt-private.pem"))
		if err != nil {
			t.Fatalf("deploy.sh deploy local (%q) on a cluster without keys made none in keys/: %v", tt.env, err)
		}
		checkSecretCalls(t, calls, private)
		if !slices.ContainsFunc(calls, func(args []string) bool {
			return slices.Contains(args, "jwt-signing-key") && slices.Contains(args, "create")
		}) {
			t.Errorf("deploy.sh deploy local (%q) on a cluster without keys uploaded no jwt-signing-key", tt.env)
		}
		var labelled []string
		applies := map[string]bool{}
		for _, args := range calls {
			if i := slices.Index(args, "label"); i >= 0 && i+2 < len(args) && args[i+1] == "namespace" {
				labelled = append(labelled, args[i+2])
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
	// Keys on the cluster: a deploy never replaces them.
	calls, out, err := fakeCluster(t, root, []string{"NAMESPACE=shop", "FAKE_SECRETS=jwt-signing-key jwt-public-keys"}, "deploy", "local")
	if err != nil {
		t.Fatalf("deploy.sh deploy local with keys on the cluster: %v\n%s", err, out)
	}
	for _, args := range calls {
		if slices.Contains(args, "create") && (slices.Contains(args, "jwt-signing-key") || slices.Contains(args, "jwt-public-keys")) {
			t.Errorf("deploy.sh deploy with the keys on the cluster ran kubectl %q: it must keep them", args)
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
