package commands_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"example.com/app/internal/testbin"
)

// goRunLine matches a `go run ./cmd/NAME ARGS` command in the docs, in a
// code block or in backquotes.
var goRunLine = regexp.MustCompile("go run (\\./cmd/[a-z]+)([^`\\n]*)")

// subcommand matches the arguments of a go run line that start with a word.
var subcommand = regexp.MustCompile(`^\s+([a-z]+)\b`)

// TestGoRunLines runs each `go run ./cmd/...` command of the README and
// docs/tutorial.md as a user with Go's default toolchain setting
// (GOTOOLCHAIN=auto) would, outside make: with -h, since the commands need
// a running edge or cluster. It checks that the command builds and starts
// (with an older go, after fetching the release go.mod names) and that every
// flag the line uses is one the command has.
func TestGoRunLines(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping go run")
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string][]string{} // package → the flags the docs use
	for _, doc := range []string{"README.md", filepath.Join("docs", "tutorial.md")} {
		text, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goRunLine.FindAllStringSubmatch(string(text), -1) {
			// A command with subcommands (cmd/keys list -dir keys): its
			// flags are the subcommand's, listed by "SUB -h".
			cmd := m[1]
			if sub := subcommand.FindStringSubmatch(m[2]); sub != nil {
				cmd += " " + sub[1]
			}
			flags[cmd] = append(flags[cmd], regexp.MustCompile(`(?:^|\s)(-[a-z-]+)`).FindAllString(m[2], -1)...)
		}
	}
	if len(flags) < 2 {
		t.Fatalf("found go run lines for %d commands in the README and the tutorial, want rollout and certgen", len(flags))
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOTOOLCHAIN=") })
	for pkg, used := range flags {
		cmd := exec.Command("go", append(append([]string{"run"}, strings.Fields(pkg)...), "-h")...)
		cmd.Dir = root
		cmd.Env = append(env, "GOTOOLCHAIN=auto")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("GOTOOLCHAIN=auto go run %s -h: %v\n%s", pkg, err, out)
			continue
		}
		for _, f := range used {
			f = strings.TrimSpace(f)
			if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(f) + `\b`).Match(out) {
				t.Errorf("the docs run go run %s %s, which %s -h does not list:\n%s", pkg, f, pkg, out)
			}
		}
	}
}
