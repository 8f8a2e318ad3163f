package check

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// kubeScore finds the kube-score binary: on PATH, or where go install puts
// it. Install it with
//
//	go install github.com/zegl/kube-score/cmd/kube-score@v1.20.0
//
// Without it the test is skipped, except in CI (CI=true), where it fails.
func kubeScore(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("kube-score"); err == nil {
		return p
	}
	dirs := []string{os.Getenv("GOBIN")}
	if gopath := os.Getenv("GOPATH"); gopath != "" {
		dirs = append(dirs, filepath.Join(filepath.SplitList(gopath)[0], "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "kube-score"); d != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("kube-score not found: go install github.com/zegl/kube-score/cmd/kube-score@v1.20.0")
	}
	t.Skip("kube-score not installed (go install github.com/zegl/kube-score/cmd/kube-score@v1.20.0)")
	return ""
}

// TestKubeScore runs kube-score on what make deploy renders for each
// provider, and on all the course's files together. Any CRITICAL or
// WARNING fails; the findings that are right but deliberate are switched
// off per object with a kube-score/ignore annotation, explained in a
// comment beside it.
func TestKubeScore(t *testing.T) {
	bin := kubeScore(t)
	for _, name := range overlayNames {
		rendered, err := kustomize(filepath.Join(configuredRepo(t), "kubernetes", "overlays", name))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "score", "--exit-one-on-warning", "--output-format", "ci", "-")
		cmd.Stdin = bytes.NewReader(rendered)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("kube-score on overlay %s: %v\n%s", name, err, findings(out))
		}
	}

	files, err := manifestFiles()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"score", "--exit-one-on-warning", "--output-format", "ci"}
	for _, f := range files {
		args = append(args, filepath.Join(kubeDir, f))
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Errorf("kube-score on every manifest: %v\n%s", err, findings(out))
	}
}

// findings keeps the lines of kube-score's ci output that are not [OK] or
// [SKIPPED].
func findings(out []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(out)) {
		if !strings.HasPrefix(line, "[OK]") && !strings.HasPrefix(line, "[SKIPPED]") {
			b.WriteString(line)
		}
	}
	return b.String()
}
