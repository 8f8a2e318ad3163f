package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEWalkthrough runs the README's curl walkthrough against the
// monolith in dev mode, as `make run` starts it, with only the ports changed.
func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found: install it (apt-get install curl) to run the README's walkthrough")
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	script := walkthrough(t, string(readme))

	m := start(t, "monolith", []string{"SHUTDOWN_TIMEOUT=5s", "PATH=" + os.Getenv("PATH")}, "-dev")
	_, httpPort, _ := strings.Cut(m.HTTP, ":")
	_, healthPort, _ := strings.Cut(m.Health, ":")
	script = strings.NewReplacer("localhost:8080", "localhost:"+httpPort, "localhost:8081", "localhost:"+healthPort).Replace(script)

	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's walkthrough failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		`{"message":"Hello"}`,
		`"token":"`,
		`{"message":"Hello","user":"user"}`,
		"HTTP/1.1 401 Unauthorized",
		`WWW-Authenticate: Basic realm="app"`,
		`"service":"monolith","version":"1.0.0"`,
		"X-App-Version: 1.0.0",
		"HTTP/1.1 503 Service Unavailable",
		"http_requests_total{",
		`login_attempts_total{outcome="success",service="monolith"} 2`,
	} {
		if !strings.Contains(strings.ToLower(string(out)), strings.ToLower(want)) { // header names are case-insensitive
			t.Errorf("the walkthrough's output lacks %q:\n%s", want, out)
		}
	}
}

// walkthrough returns the first sh code block after the "## Walkthrough" heading.
func walkthrough(t *testing.T, readme string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "## Walkthrough")
	if !ok {
		t.Fatal(`README.md has no "## Walkthrough" section`)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatal("README.md's walkthrough has no sh code block")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md's walkthrough code block is not closed")
	}
	return block
}
