package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// signers are the binaries that issue tokens and so hold the signing key.
var signers = []string{"auth", "monolith"}

// TestTokenKeys checks how the token keys reach the pods: no HS256 secret
// anywhere (every pod that has it can mint tokens); the signing key only
// in auth and the monolith, and only in their app container; the public
// keys in every app container; both as directory mounts of their Secrets
// (a subPath mount is never updated, so a rotation would not reach it);
// and the services that log users in say where users come from.
func TestTokenKeys(t *testing.T) {
	for _, p := range pods(t) {
		for _, c := range p.spec.Containers {
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "JWT_SECRET") {
					t.Errorf("%v container %s: env %s: HS256 lets every service holding it mint tokens; mount the key files", p, c.Name, e.Name)
				}
			}
			for _, m := range c.VolumeMounts {
				v, _ := volume(p, m.Name)
				if v.Secret == nil || !slices.Contains([]string{"jwt-signing-key", "jwt-public-keys", "users"}, v.Secret.SecretName) {
					continue
				}
				if m.SubPath != "" || m.SubPathExpr != "" {
					t.Errorf("%v container %s: secret %s mounted with subPath: never updated, so a rotation would not reach it", p, c.Name, v.Secret.SecretName)
				}
				if !m.ReadOnly {
					t.Errorf("%v container %s: secret %s mounted writable", p, c.Name, v.Secret.SecretName)
				}
			}
		}
	}
	for _, ac := range appContainers(t) {
		signs := slices.Contains(signers, ac.binary)
		mountsSigning := slices.ContainsFunc(ac.c.VolumeMounts, func(m corev1.VolumeMount) bool {
			v, _ := volume(ac.pod, m.Name)
			return v.Secret != nil && v.Secret.SecretName == "jwt-signing-key"
		})
		_, hasPrivate := envValue(ac.c, "JWT_PRIVATE_KEY_FILE")
		_, hasPublic := envValue(ac.c, "JWT_PUBLIC_KEYS_FILE")
		switch {
		case !signs && (mountsSigning || hasPrivate):
			t.Errorf("%v container %s (%s): has the signing key; it only verifies tokens: give it the public keys only", ac.pod, ac.c.Name, ac.binary)
		case signs && !(mountsSigning && hasPrivate):
			t.Errorf("%v container %s (%s): no signing key mounted and named in JWT_PRIVATE_KEY_FILE", ac.pod, ac.c.Name, ac.binary)
		}
		if !hasPublic {
			t.Errorf("%v container %s: no JWT_PUBLIC_KEYS_FILE: a rotation needs every service to accept a key set", ac.pod, ac.c.Name)
		}
		if signs {
			demo, hasDemo := envValue(ac.c, "DEMO_USER")
			_, hasUsers := envValue(ac.c, "USERS_FILE")
			if hasDemo == hasUsers || hasDemo && demo != "true" {
				t.Errorf("%v container %s: DEMO_USER=%q, USERS_FILE set %v: want exactly one, DEMO_USER=true said visibly or a users file", ac.pod, ac.c.Name, demo, hasUsers)
			}
		}
	}
	// Other containers (nginx) never see a key.
	for _, p := range pods(t) {
		app := map[string]bool{}
		for _, ac := range appContainers(t) {
			if ac.pod.file == p.file && ac.pod.name == p.name {
				app[ac.c.Name] = true
			}
		}
		for _, c := range p.spec.Containers {
			if app[c.Name] {
				continue
			}
			for _, m := range c.VolumeMounts {
				if v, _ := volume(p, m.Name); v.Secret != nil && strings.HasPrefix(v.Secret.SecretName, "jwt-") {
					t.Errorf("%v container %s mounts secret %s", p, c.Name, v.Secret.SecretName)
				}
			}
		}
	}
}

func volume(p pod, name string) (corev1.Volume, bool) {
	for _, v := range p.spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// TestUsersFileComponent renders the local overlay with
// components/users-file, as its comment tells users to: auth reads the
// users file from Secret users (which deploy.sh makes from keys/users)
// and no longer sets DEMO_USER, and the services accept the result.
func TestUsersFileComponent(t *testing.T) {
	root := configuredRepo(t)
	dir, err := os.MkdirTemp(filepath.Join(root, "kubernetes", "overlays"), "users-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	k := "resources:\n  - ../local\ncomponents:\n  - ../../components/users-file\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := build(t, dir)
	all := podsOf(objs)
	checkOverlayReferences(t, objs, all)
	n := 0
	for _, p := range all {
		for _, c := range p.spec.Containers {
			if c.Name != "auth" {
				continue
			}
			n++
			if _, ok := envValue(c, "DEMO_USER"); ok {
				t.Errorf("%v: DEMO_USER still set with the users-file component", p)
			}
			ac := appContainer{pod: p, c: c, binary: "auth"}
			cfg := parseConfig(t, ac, nil)
			if cfg.UsersFile == "" || cfg.DemoUser {
				t.Errorf("%v: users file %q, demo user %v: want the users file only", p, cfg.UsersFile, cfg.DemoUser)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d auth containers in the rendered overlay, want 1", n)
	}
}
