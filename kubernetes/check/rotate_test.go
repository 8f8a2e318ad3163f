package check

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"example.com/app/internal/token"
)

// reloadMain prints the "keys reloaded" line a service logs after reading
// the key files of the fake cluster's Secrets in dir (FAKE_STATE): what
// `kubectl logs` shows once the kubelet has updated the mounted Secrets
// and the service has re-read them. app is the container: auth signs,
// hello only verifies. It reads the files with the services' own loader.
func reloadMain(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintf(stderr, "reload helper: want DIR APP, got %q\n", args)
		return 2
	}
	files := token.KeyFiles{Public: filepath.Join(args[0], "jwt-public-keys")}
	if args[1] != "hello" {
		files.Private = filepath.Join(args[0], "jwt-signing-key")
	}
	ks, err := files.Load()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	line := struct {
		Msg      string   `json:"msg"`
		Accepted []string `json:"accepted"`
		Signing  string   `json:"signing,omitempty"`
	}{Msg: "keys reloaded"}
	seen := map[string]bool{}
	for _, k := range ks.Accept {
		if !seen[k.ID] {
			seen[k.ID] = true
			line.Accepted = append(line.Accepted, k.ID)
		}
	}
	if ks.Signing != nil {
		line.Signing = ks.Signing.ID
	}
	b, _ := json.Marshal(line) // strings only: cannot fail
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}

// TestRotate runs make rotate's script through a whole rotation against
// the fake kubectl, whose Secrets are files the pods' log lines are made
// from: add publishes a new key and waits until every pod accepts it,
// promote makes it sign and records when, retire refuses within TOKEN_TTL
// of promote and, with FORCE=1, leaves only the new key. No key shows in
// an argument. Rotating with keys/ other than the cluster's is refused.
func TestRotate(t *testing.T) {
	root := repoCopy(t)
	keysDir, state := t.TempDir(), t.TempDir()
	env := []string{"NAMESPACE=test", "KEYS_DIR=" + keysDir, "FAKE_STATE=" + state, "ROTATE_TIMEOUT=10"}
	run := func(args ...string) (string, error) {
		t.Helper()
		calls, out, err := fakeCluster(t, root, env, args...)
		private, rerr := os.ReadFile(filepath.Join(keysDir, "jwt-private.pem"))
		if rerr == nil {
			checkSecretCalls(t, calls, private)
		}
		return out, err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("deploy.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	loadState := func() (signing string, accepted []string) {
		t.Helper()
		ks, err := token.KeyFiles{Private: filepath.Join(state, "jwt-signing-key"), Public: filepath.Join(state, "jwt-public-keys")}.Load()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks.Accept {
			accepted = append(accepted, k.ID)
		}
		return ks.Signing.ID, accepted
	}
	if out, err := run("rotate", "add"); err == nil || !strings.Contains(out, "make secrets") {
		t.Errorf("deploy.sh rotate add without keys on the cluster: error %v, output %q; want a refusal naming make secrets", err, out)
	}
	must("secrets")
	a, accepted := loadState()
	if len(accepted) != 1 {
		t.Fatalf("after secrets: the cluster accepts %v, want only %s", accepted, a)
	}
	if out, err := run("rotate", "promote"); err == nil || !strings.Contains(out, "STEP=add first") {
		t.Errorf("deploy.sh rotate promote before add: error %v, output %q; want a refusal", err, out)
	}

	out := must("rotate", "add")
	signing, accepted := loadState()
	if signing != a || len(accepted) != 2 {
		t.Fatalf("after rotate add: the cluster signs with %s, accepts %v; want %s and two keys", signing, accepted, a)
	}
	b := accepted[1]
	if !strings.Contains(out, "every pod accepts "+b) {
		t.Errorf("deploy.sh rotate add: output lacks that every pod accepts %s:\n%s", b, out)
	}

	out = must("rotate", "promote")
	if signing, accepted = loadState(); signing != b || len(accepted) != 2 {
		t.Fatalf("after rotate promote: the cluster signs with %s, accepts %v; want %s and both keys", signing, accepted, b)
	}
	if !strings.Contains(out, "new tokens are signed with "+b) {
		t.Errorf("deploy.sh rotate promote: output:\n%s", out)
	}

	if out, err := run("rotate", "retire"); err == nil || !strings.Contains(out, "retire after") {
		t.Errorf("deploy.sh rotate retire right after promote: error %v, output %q; want a refusal saying when", err, out)
	}
	if _, accepted = loadState(); len(accepted) != 2 {
		t.Errorf("the refused retire changed the cluster's keys: %v", accepted)
	}
	env = append(env, "FORCE=1")
	must("rotate", "retire")
	if signing, accepted = loadState(); signing != b || len(accepted) != 1 || accepted[0] != b {
		t.Errorf("after rotate retire: the cluster signs with %s, accepts %v; want only %s", signing, accepted, b)
	}

	// Another machine's keys/: refused before anything changes.
	other := t.TempDir()
	if out, err := exec.Command(keysCommand(t), "gen", "-dir", other).CombinedOutput(); err != nil {
		t.Fatalf("keys gen: %v\n%s", err, out)
	}
	env[1] = "KEYS_DIR=" + other
	if out, err := run("rotate", "add"); err == nil || !strings.Contains(out, "another key") {
		t.Errorf("deploy.sh rotate add with keys/ that did not make the cluster's keys: error %v, output %q; want a refusal", err, out)
	}
	if _, accepted = loadState(); len(accepted) != 1 {
		t.Errorf("the refused add changed the cluster's keys: %v", accepted)
	}
}
