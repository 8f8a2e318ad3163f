package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	// make deploy OVERLAY=x applies the base's files through overlay x.
	overlayRe := regexp.MustCompile(`^make\s+(?:\S+\s+)*(?:deploy|undeploy)\b.*\bOVERLAY=(\S+)`)
	deploys := 0
	for _, cmd := range commands(tutorial) {
		m := overlayRe.FindStringSubmatch(cmd)
		if m == nil {
			continue
		}
		deploys++
		if !slices.Contains(overlayNames, m[1]) {
			t.Errorf("docs/tutorial.md: %s: no overlay %s (there are %q)", cmd, m[1], overlayNames)
		}
		for _, r := range readKustomization(t, filepath.Join(kubeDir, "base")).Resources {
			used[filepath.Join("kubernetes", strings.TrimPrefix(r, "../"))] = true
		}
	}
	if deploys == 0 {
		t.Error("docs/tutorial.md: no make deploy OVERLAY=…")
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

// TestTutorialCommands checks the tutorial's commands against what the
// course's students ran into: no deprecated --record; no object made with
// kubectl create and later changed with kubectl apply (which warns about
// the missing last-applied configuration); the load balancer's address
// read in a loop that waits for it (an empty address would make a
// certificate for localhost only); and a kubectl debug recipe that passes
// the restricted profile, since the images have no shell.
func TestTutorialCommands(t *testing.T) {
	tutorial := readTutorial(t)
	created := map[string]string{} // kind/name -> the command
	debug := false
	for _, cmd := range commands(tutorial) {
		if strings.Contains(cmd, "--record") {
			t.Errorf("docs/tutorial.md: %s: --record is deprecated", cmd)
		}
		fields := strings.Fields(cmd)
		if len(fields) > 2 && fields[0] == "kubectl" && (fields[1] == "create" || fields[1] == "apply") {
			for _, f := range kubectlFiles(cmd) {
				rel, ok := strings.CutPrefix(filepath.Clean(f), "kubernetes/")
				if !ok || !strings.HasSuffix(rel, ".yaml") {
					continue
				}
				objs, err := decodeFile(rel)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range objs {
					id := o.kind() + "/" + o.name()
					if fields[1] == "create" {
						created[id] = cmd
					} else if c, ok := created[id]; ok {
						t.Errorf("docs/tutorial.md: %s changes %s, made by %s: apply warns about the missing last-applied configuration (apply both times, or delete first)", cmd, id, c)
					}
				}
			}
		}
		if strings.Contains(cmd, "EXTERNAL_IP=$(") && (!strings.HasPrefix(cmd, "until ") || !strings.Contains(cmd, `-n "$EXTERNAL_IP"`)) {
			t.Errorf("docs/tutorial.md: %s: wait for the address in a loop (until … [ -n \"$EXTERNAL_IP\" ]; do …; done)", cmd)
		}
		if strings.HasPrefix(cmd, "kubectl debug ") {
			debug = true
			for _, want := range []string{"--profile=restricted", "--target=", "-it"} {
				if !strings.Contains(cmd, want) {
					t.Errorf("docs/tutorial.md: %s: want %s", cmd, want)
				}
			}
		}
	}
	if !debug {
		t.Error("docs/tutorial.md: no kubectl debug recipe")
	}
}

// TestCertsRefusesEmptyHosts runs `make certs HOSTS=` as the tutorial's
// `make certs FORCE=1 HOSTS=$EXTERNAL_IP` runs with EXTERNAL_IP unset: it
// must fail before writing anything.
func TestCertsRefusesEmptyHosts(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(repoDir, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "certs", "FORCE=1", "HOSTS=")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "HOSTS is empty") {
		t.Errorf("make certs HOSTS=: error %v, output %q: want a refusal", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "tls")); err == nil {
		t.Error("make certs HOSTS= wrote tls/")
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
