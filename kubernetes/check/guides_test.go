package check

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// guides are the provider guides, each checked like docs/tutorial.md: what
// they tell a learner to type must name files, make targets, make variables
// and overlays the repository has.
var guides = []string{"docs/gke.md", "docs/eks.md", "docs/monitoring.md"}

// restsOn is the heading under which each guide lists the statements that
// rest on documentation only (they could not be run without a cloud account).
const restsOn = "## What this guide rests on"

var (
	// repoPathRe finds repository paths at the start of a word of a command
	// or code span: kubernetes/overlays/eks, nginx/frontend.conf.template, ./cmd/rollout.
	repoPathRe = regexp.MustCompile(`(?:^|[\s=("'])((?:\./)?(?:cmd|kubernetes|monitoring|nginx|docs|dockerfiles|frontend|internal|test|tls)/[\w./-]*)`)
	// makeRe finds make invocations anywhere in a command: make deploy OVERLAY=eks.
	makeRe = regexp.MustCompile(`(?:^|[\s;&|(])make\s+([^;&|#]*)`)
	// makeArgRe is one make argument: a target or VARIABLE=value.
	makeArgRe = regexp.MustCompile(`^([A-Za-z][\w-]*)(?:=(\S*))?$`)
	// linkRe finds the targets of Markdown links.
	linkRe = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// spanRe finds inline code spans.
	spanRe = regexp.MustCompile("`([^`\n]+)`")
)

// snippets returns what a guide gives to type: the lines of its fenced code
// blocks (continuations joined) and its inline code spans.
func snippets(doc string) []string {
	out := commands(doc)
	in := false
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if in {
			continue
		}
		for _, m := range spanRe.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// guideProblems returns what the guide name (a path from the repository's
// root) refers to that the repository does not have. exists reports whether
// a path relative to the repository's root exists; makefile is the Makefile.
func guideProblems(name, doc string, exists func(string) bool, makefile string) []string {
	var problems []string
	seen := map[string]bool{}
	// report says what is missing once, where it is first named: a
	// kubectl file is also a path, a target is often named twice.
	report := func(where, format string, args ...any) {
		what := fmt.Sprintf(format, args...)
		if !seen[what] {
			seen[what] = true
			problems = append(problems, name+": "+where+": "+what)
		}
	}
	checkPath := func(where, p string) {
		p = strings.TrimRight(path.Clean(strings.TrimPrefix(p, "./")), ".,:;")
		// tls/ is what make certs writes; it is not committed.
		if !strings.HasPrefix(p, "tls/") && p != "tls" && !exists(p) {
			report(where, "no path %s", p)
		}
	}
	for _, s := range snippets(doc) {
		if strings.HasPrefix(s, "kubectl ") || strings.Contains(s, "| kubectl ") {
			for _, f := range kubectlFiles(s) {
				if f != "-" {
					checkPath(s, f)
				}
			}
		}
		for _, m := range repoPathRe.FindAllStringSubmatch(s, -1) {
			checkPath(s, m[1])
		}
		for _, m := range makeRe.FindAllStringSubmatch(s, -1) {
			for _, arg := range strings.Fields(m[1]) {
				a := makeArgRe.FindStringSubmatch(arg)
				if a == nil {
					break // not a target or variable: the make command ends
				}
				if !strings.Contains(arg, "=") {
					if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(a[1]) + `:`).MatchString(makefile) {
						report(s, "the Makefile has no target %s", a[1])
					}
					continue
				}
				if !regexp.MustCompile(`(?m)\$\(` + a[1] + `\)|^` + a[1] + `\s*[?:+]?=`).MatchString(makefile) {
					report(s, "the Makefile has no variable %s", a[1])
				}
				if a[1] == "OVERLAY" && regexp.MustCompile(`^[a-z]+$`).MatchString(a[2]) && !exists("kubernetes/overlays/"+a[2]) {
					report(s, "no overlay kubernetes/overlays/%s", a[2])
				}
			}
		}
	}
	for _, m := range linkRe.FindAllStringSubmatch(doc, -1) {
		target, _, _ := strings.Cut(m[1], "#")
		if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		checkPath("link "+m[1], path.Join(path.Dir(name), target))
	}
	if !strings.Contains(doc, "\n"+restsOn+"\n") {
		report("the guide", "no %q section listing what rests on documentation only", restsOn)
	}
	return problems
}

// TestGuides checks docs/gke.md and docs/eks.md against the repository.
func TestGuides(t *testing.T) {
	makefile, err := os.ReadFile(filepath.Join(repoDir, "Makefile"))
	if err != nil {
		t.Fatalf("reading the Makefile: %v", err)
	}
	exists := func(rel string) bool {
		_, err := os.Stat(filepath.Join(repoDir, filepath.FromSlash(rel)))
		return err == nil
	}
	for _, name := range guides {
		data, err := os.ReadFile(filepath.Join(repoDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("reading the guide: %v", err)
			continue
		}
		if n := len(snippets(string(data))); n < 30 {
			t.Errorf("%s: %d commands and code spans, want a guide's many", name, n)
		}
		for _, p := range guideProblems(name, string(data), exists, string(makefile)) {
			t.Error(p)
		}
	}
}

// TestGuideProblems checks that guideProblems finds each kind of mistake,
// and nothing in a guide without mistakes.
func TestGuideProblems(t *testing.T) {
	files := map[string]bool{
		"docs/tutorial.md":                     true,
		"kubernetes/overlays/eks":              true,
		"kubernetes/services/frontend.yaml":    true,
		"cmd/rollout":                          true,
		"internal/config":                      true,
		"kubernetes/overlays/eks/kustomize.md": false,
	}
	exists := func(p string) bool { return files[p] }
	makefile := "REGISTRY ?= r\ndeploy: ## x\n\tdeploy.sh $(OVERLAY)\npush:\n"
	good := "# Guide\n\nSee [the tutorial](tutorial.md#3-a-cluster) and `internal/config`.\n\n" +
		"```sh\nmake push REGISTRY=$REGISTRY\nmake deploy OVERLAY=eks   # the overlay\n" +
		"kubectl delete -f kubernetes/services/frontend.yaml\ngo run ./cmd/rollout -cacert tls/ca.pem\n```\n\n" +
		restsOn + "\n\n- a statement\n"
	if got := guideProblems("docs/x.md", good, exists, makefile); len(got) != 0 {
		t.Errorf("guideProblems(good guide) = %q, want none", got)
	}
	tests := []struct {
		doc  string
		want string
	}{
		{"```sh\nmake deploy OVERLAY=gke\n```\n", "no overlay kubernetes/overlays/gke"},
		{"```sh\nmake undeploy OVERLAY=eks\n```\n", "no target undeploy"},
		{"Run `make deploy OVERLAYS=eks`.\n", "no variable OVERLAYS"},
		{"```sh\nkubectl apply -f kubernetes/services/frontend.yml\n```\n", "no path kubernetes/services/frontend.yml"},
		{"Edit `kubernetes/overlays/eks/kustomize.md`.\n", "no path kubernetes/overlays/eks/kustomize.md"},
		{"See [the guide](gke.md).\n", "no path docs/gke.md"},
		{"```sh\ncd /tmp && make push REGISTRY=r && make bogus\n```\n", "no target bogus"},
	}
	for _, tt := range tests {
		got := strings.Join(guideProblems("docs/x.md", tt.doc+"\n"+restsOn+"\n", exists, makefile), "\n")
		if !strings.Contains(got, tt.want) {
			t.Errorf("guideProblems(%q) = %q, want a problem %q", tt.doc, got, tt.want)
		}
	}
	if got := strings.Join(guideProblems("docs/x.md", "# no section\n", exists, makefile), "\n"); !strings.Contains(got, restsOn) {
		t.Errorf("guideProblems(guide without %q) = %q, want that problem", restsOn, got)
	}
}
