package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func readTutorial(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir, "docs", "tutorial.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// commands returns the lines of the tutorial's fenced code blocks, with
// continuation lines joined.
func commands(tutorial string) []string {
	var out []string
	in := false
	cont := ""
	for line := range strings.Lines(tutorial) {
		line = strings.TrimRight(line, "\n")
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		out = append(out, strings.TrimSpace(cont+line))
		cont = ""
	}
	return out
}

// kubectlFiles returns the file arguments of a kubectl command: -f, -k,
// --filename, --kustomize, --patch-file, and --from-file's paths.
func kubectlFiles(cmd string) []string {
	fields := strings.Fields(cmd)
	var files []string
	for i, f := range fields {
		next := ""
		if i+1 < len(fields) {
			next = fields[i+1]
		}
		switch {
		case f == "-f" || f == "-k" || f == "--filename" || f == "--kustomize" || f == "--patch-file":
			files = append(files, next)
		case strings.HasPrefix(f, "--filename=") || strings.HasPrefix(f, "--kustomize=") || strings.HasPrefix(f, "--patch-file="):
			files = append(files, f[strings.Index(f, "=")+1:])
		case strings.HasPrefix(f, "--from-file="):
			v := strings.TrimPrefix(f, "--from-file=")
			if _, p, ok := strings.Cut(v, "="); ok {
				v = p
			}
			files = append(files, v)
		}
	}
	return files
}

// TestTutorialFiles checks that every file a kubectl command of
// docs/tutorial.md names exists (commands run from the repository's root;
// tls/ is made by make certs), that every manifest and patch is used by the
// tutorial, and that the make targets it runs are the Makefile's.
func TestTutorialFiles(t *testing.T) {
	tutorial := readTutorial(t)
	used := map[string]bool{}
	n := 0
	for _, cmd := range commands(tutorial) {
		if !strings.HasPrefix(cmd, "kubectl ") && !strings.Contains(cmd, "| kubectl ") {
			continue
		}
		for _, f := range kubectlFiles(cmd) {
			n++
			if f == "-" {
				continue // stdin
			}
			used[filepath.Clean(f)] = true
			if strings.HasPrefix(f, "tls/") {
				continue
			}
			if _, err := os.Stat(filepath.Join(repoDir, f)); err != nil {
				t.Errorf("docs/tutorial.md: %s: %v", cmd, err)
			}
		}
	}
	if n < 15 {
		t.Errorf("found %d file arguments in the tutorial's kubectl commands, want the course's many", n)
	}
	// Every lesson file appears in the tutorial.
	for _, glob := range []string{"pods/*.yaml", "services/*.yaml", "deployments/*.yaml", "patches/*.yaml"} {
		files, _ := filepath.Glob(filepath.Join(kubeDir, glob))
		for _, f := range files {
			rel := filepath.Join("kubernetes", filepath.Base(filepath.Dir(f)), filepath.Base(f))
			if !used[rel] {
				t.Errorf("docs/tutorial.md: no kubectl command uses %s", rel)
			}
		}
	}
	// Other paths in commands: go run ./cmd/..., kubernetes/deploy.sh, nginx/...
	pathRe := regexp.MustCompile(`(?:^|[\s=])((?:\./)?(?:cmd|kubernetes|nginx|docs)/[\w./-]*)`)
	for _, cmd := range commands(tutorial) {
		for _, m := range pathRe.FindAllStringSubmatch(cmd, -1) {
			if _, err := os.Stat(filepath.Join(repoDir, m[1])); err != nil {
				t.Errorf("docs/tutorial.md: %s: %v", cmd, err)
			}
		}
	}
	// make targets.
	makefile, err := os.ReadFile(filepath.Join(repoDir, "Makefile"))
	if err != nil {
		t.Fatalf("reading the Makefile: %v", err)
	}
	makeRe := regexp.MustCompile(`^make((?:\s+[a-z][\w-]*)+)`)
	for _, cmd := range commands(tutorial) {
		m := makeRe.FindStringSubmatch(cmd)
		if m == nil {
			continue
		}
		for _, target := range strings.Fields(m[1]) {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).Match(makefile) {
				t.Errorf("docs/tutorial.md: %s: the Makefile has no target %s", cmd, target)
			}
		}
	}
}

// TestKubectlFiles checks the extraction on the forms the tutorial uses.
func TestKubectlFiles(t *testing.T) {
	tests := []struct {
		cmd  string
		want string
	}{
		{"kubectl create -f kubernetes/pods/monolith.yaml", "kubernetes/pods/monolith.yaml"},
		{"kubectl apply --filename=kubernetes/services/hello.yaml", "kubernetes/services/hello.yaml"},
		{"kubectl apply -k kubernetes/", "kubernetes/"},
		{"kubectl patch deployment hello --patch-file kubernetes/patches/hello-2.0.0.yaml", "kubernetes/patches/hello-2.0.0.yaml"},
		{"kubectl create secret generic x --from-file=cert.pem=tls/cert.pem", "tls/cert.pem"},
		{"kubectl get pods", ""},
	}
	for _, tt := range tests {
		if got := strings.Join(kubectlFiles(tt.cmd), " "); got != tt.want {
			t.Errorf("kubectlFiles(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}
