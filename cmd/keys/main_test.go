package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"example.com/app/internal/token"
	"example.com/app/internal/user"
)

func keys(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(append([]string{"keys"}, args...), &stdout, &stderr)
	return stdout.String() + stderr.String(), err
}

func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := keys(t, args...)
	if err != nil {
		t.Fatalf("keys %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// load reads the directory as a service would: the signing key and the set.
func load(t *testing.T, dir string) (signing string, accepted []string) {
	t.Helper()
	ks, err := token.KeyFiles{Private: filepath.Join(dir, privateFile), Public: filepath.Join(dir, publicFile)}.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks.Accept {
		accepted = append(accepted, k.ID)
	}
	return ks.Signing.ID, accepted
}

// TestRotation walks gen → add → promote → retire and checks at each step
// what a service reading the files would sign with and accept.
func TestRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	must(t, "gen", "-dir", dir)
	a, accepted := load(t, dir)
	if len(accepted) != 1 || accepted[0] != a {
		t.Fatalf("after gen: accepted %v, want only the signing key %s", accepted, a)
	}
	if info, err := os.Stat(filepath.Join(dir, privateFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("private key file mode = %v, %v; want 0600", info.Mode(), err)
	}
	if out, err := keys(t, "gen", "-dir", dir); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("gen over existing keys = %v %s, want a refusal", err, out)
	}

	must(t, "add", "-dir", dir)
	signing, accepted := load(t, dir)
	if signing != a || len(accepted) != 2 {
		t.Fatalf("after add: signing %s, accepted %v; want A still signing and two accepted", signing, accepted)
	}
	b := accepted[1]
	if _, err := keys(t, "add", "-dir", dir); err == nil {
		t.Error("add during a rotation: error = nil, want a refusal")
	}
	if out := must(t, "list", "-dir", dir); !strings.Contains(out, a+"  accepted, signs") || !strings.Contains(out, b+"  accepted, staged to sign next") {
		t.Errorf("list during the rotation:\n%s\nwant A signing and B staged", out)
	}

	must(t, "promote", "-dir", dir)
	signing, accepted = load(t, dir)
	if signing != b || len(accepted) != 2 {
		t.Fatalf("after promote: signing %s, accepted %v; want B signing and both accepted", signing, accepted)
	}

	out := must(t, "retire", "-dir", dir)
	signing, accepted = load(t, dir)
	if signing != b || len(accepted) != 1 || accepted[0] != b || !strings.Contains(out, "retired key "+a) {
		t.Errorf("after retire: signing %s, accepted %v, output %q; want B alone", signing, accepted, out)
	}
	if out := must(t, "retire", "-dir", dir); !strings.Contains(out, "no key to retire") {
		t.Errorf("retire twice: %q, want nothing to retire", out)
	}
	if _, err := keys(t, "promote", "-dir", dir); err == nil {
		t.Error("promote with nothing staged: error = nil, want one")
	}
}

func TestUsers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	out := must(t, "users", "-out", file, "-name", "alice", "-email", "alice@example.com")
	m := regexp.MustCompile(`password, shown only now: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys users printed %q, want the password", out)
	}
	store, err := user.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := store.Authenticate("alice", m[1]); err != nil || u.Email != "alice@example.com" {
		t.Errorf("Authenticate(alice, printed password) = %+v, %v; want alice", u, err)
	}
	data, _ := os.ReadFile(file)
	if bytes.Contains(data, []byte(m[1])) {
		t.Error("the users file holds the password in clear")
	}
	if _, err := keys(t, "users", "-out", file); err == nil {
		t.Error("users over an existing file: error = nil, want a refusal")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"list", "extra"}} {
		if _, err := keys(t, args...); err == nil {
			t.Errorf("keys %q: error = nil, want one", args)
		}
	}
}
