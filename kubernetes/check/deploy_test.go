package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// fakeKubectl logs each call's arguments (each followed by 0x1f, one call a
// line) and, for each --from-file=KEY=PATH, the size of the file; it answers
// like a cluster where nothing exists yet, or where the JWT Secret exists
// when FAKE_JWT_EXISTS is set.
const fakeKubectl = `#!/usr/bin/env bash
line=
for a in "$@"; do
	line+="$a"$'\037'
	case $a in
	--from-file=*=*) p=${a#--from-file=}; p=${p#*=}; line+="size=$(wc -c <"$p" | tr -d ' ')"$'\037' ;;
	esac
done
printf '%s\n' "$line" >>"$FAKE_KUBECTL_LOG" # one write: the two ends of a pipe run at once
case " $* " in
*" apply "*) cat >/dev/null; echo "object/fake created" ;;
*" --dry-run=client "*) echo "kind: Fake" ;;
*" get secret "*) if [[ -n ${FAKE_JWT_EXISTS:-} ]]; then echo secret/jwt-secret; fi ;;
esac
`

// created is what one `deploy.sh secrets` run creates: for each
// "secret/NAME" or "configmap/NAME", its keys and where each key's value
// comes from (a file's path, or "literal").
type created map[string]map[string]string

// runSecrets runs `deploy.sh secrets` against the fake kubectl.
func runSecrets(t *testing.T, jwtExists bool) (created, [][]string) {
	t.Helper()
	dir := t.TempDir()
	kubectl := filepath.Join(dir, "kubectl")
	if err := os.WriteFile(kubectl, []byte(fakeKubectl), 0o755); err != nil {
		t.Fatal(err)
	}
	tls := filepath.Join(dir, "tls")
	if err := os.Mkdir(tls, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cert.pem", "key.pem", "ca.pem", "ca-key.pem"} {
		if err := os.WriteFile(filepath.Join(tls, f), []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(dir, "log")
	cmd := exec.Command("bash", filepath.Join(kubeDir, "deploy.sh"), "secrets")
	cmd.Env = append(os.Environ(), "KUBECTL="+kubectl, "TLS_DIR="+tls, "NAMESPACE=test", "FAKE_KUBECTL_LOG="+log)
	if jwtExists {
		cmd.Env = append(cmd.Env, "FAKE_JWT_EXISTS=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy.sh secrets: %v\n%s", err, out)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]string
	got := created{}
	for line := range strings.Lines(string(data)) {
		args := strings.Split(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\x1f"), "\x1f")
		calls = append(calls, args)
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

// deployScriptCreates returns what `deploy.sh secrets` creates (run once).
func deployScriptCreates(t *testing.T) created {
	t.Helper()
	secretsRun.Lock()
	defer secretsRun.Unlock()
	if secretsRun.got == nil {
		secretsRun.got, _ = runSecrets(t, false)
	}
	return secretsRun.got
}

// TestDeployScriptSecrets checks what `make secrets` creates: the TLS pair
// without the CA's key, a JWT key long enough for the services, the nginx
// configs from nginx/, every call idempotent, and no new JWT key when one
// exists.
func TestDeployScriptSecrets(t *testing.T) {
	got, calls := runSecrets(t, false)
	tls := got["secret/tls-certs"]
	if tls == nil || !strings.HasSuffix(tls["cert.pem"], "/cert.pem") || !strings.HasSuffix(tls["key.pem"], "/key.pem") || len(tls) != 4 {
		t.Errorf("secret/tls-certs keys %v, want exactly cert.pem and key.pem from TLS_DIR", tls)
	}
	jwt := got["secret/jwt-secret"]
	if n, err := strconv.Atoi(jwt["JWT_SECRET size"]); err != nil || n < 32 {
		t.Errorf("secret/jwt-secret key JWT_SECRET: %d bytes (%v), want at least 32", n, err)
	}
	for name, want := range map[string]string{
		"configmap/nginx-frontend-conf": "nginx/frontend.conf.template",
		"configmap/nginx-proxy-conf":    "nginx/proxy.conf.template",
	} {
		var paths []string
		for k, p := range got[name] {
			if !strings.HasSuffix(k, " size") {
				paths = append(paths, p)
			}
		}
		if len(paths) != 1 || !strings.HasSuffix(paths[0], want) {
			t.Errorf("%s from %q, want %s", name, paths, want)
		}
	}
	if _, err := os.Stat(filepath.Join(repoDir, "frontend", "index.html")); err == nil && got["configmap/frontend-ui"] == nil {
		t.Error("frontend/index.html exists but deploy.sh made no configmap/frontend-ui")
	}
	for _, args := range calls {
		if slices.Contains(args, "create") && !slices.Contains(args, "--dry-run=client") {
			t.Errorf("deploy.sh runs kubectl %q: want create --dry-run=client piped to apply", args)
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--from-literal") }) {
			t.Errorf("deploy.sh runs kubectl %q: a literal shows in the process list", args)
		}
	}

	again, _ := runSecrets(t, true)
	if _, ok := again["secret/jwt-secret"]; ok {
		t.Error("deploy.sh secrets with secret/jwt-secret present made a new one: it must keep the key")
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
