package check

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"
)

// RulesTestFile holds promtool's unit tests of the rules.
const RulesTestFile = "../rules_test.yaml"

// promtool is the path of promtool, built by TestMain from the version in
// go.mod (Go's build cache makes it a link step after the first time).
var promtool string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "monitoring-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	promtool = filepath.Join(dir, "promtool")
	// The service discoveries left out but Kubernetes' (the test cluster's
	// scrape config uses it): a shorter cold build, the same tags as
	// test/cluster/build.sh's prometheus, and -trimpath as it, so that the
	// two share Go's build cache.
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "remove_all_sd,enable_kubernetes_sd", "-o", promtool, "github.com/prometheus/prometheus/cmd/promtool")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building promtool: %v\n%s", err, out)
		os.RemoveAll(dir) //nolint:errcheck // a temporary directory
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir) //nolint:errcheck // a temporary directory
	os.Exit(code)
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRulesCheck runs promtool check rules, which also lints them.
func TestRulesCheck(t *testing.T) {
	out := runPromtool(t, "check", "rules", "--lint=all", "--lint-fatal", RulesFile)
	t.Log(out)
}

// TestRulesUnit runs promtool test rules: every alert fires on the series
// that should trigger it and stays silent on a healthy rollout's.
func TestRulesUnit(t *testing.T) {
	out := runPromtool(t, "test", "rules", "--run=.*", RulesTestFile)
	t.Log(out)
}

// unitTests is the part of promtool's test file format that the coverage
// check reads.
type unitTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name       string `yaml:"name"`
		AlertTests []struct {
			EvalTime  string           `yaml:"eval_time"`
			AlertName string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// healthyTest is the name of the test group holding a healthy rollout's
// series, on which every alert must stay silent.
const healthyTest = "healthy rollout"

// parseRules parses the rules file as Prometheus loads it.
func parseRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(RulesFile, false, model.LegacyValidation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("parsing %s: %v", RulesFile, errs)
	}
	return groups
}

// alertNames returns the names of the alerts in the rules file.
func alertNames(t *testing.T) []string {
	t.Helper()
	groups := parseRules(t)
	var names []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !slices.Contains(names, r.Alert) {
				names = append(names, r.Alert)
			}
		}
	}
	return names
}

// TestEveryAlertTested checks the unit tests' coverage: each alert has a
// test in which it fires, and is tested silent at the start, middle and
// end of the healthy rollout.
func TestEveryAlertTested(t *testing.T) {
	data, err := os.ReadFile(RulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var ut unitTests
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&ut); err != nil {
		t.Fatalf("%s: %v", RulesTestFile, err)
	}
	if !slices.Equal(ut.RuleFiles, []string{"rules.yaml"}) {
		t.Errorf("%s: rule_files %q, want [rules.yaml]", RulesTestFile, ut.RuleFiles)
	}
	fires := map[string]bool{}
	silent := map[string]int{}
	for _, tg := range ut.Tests {
		for _, at := range tg.AlertTests {
			switch {
			case len(at.ExpAlerts) > 0:
				fires[at.AlertName] = true
			case tg.Name == healthyTest:
				silent[at.AlertName]++
			}
		}
	}
	names := alertNames(t)
	if len(names) < 8 {
		t.Fatalf("%s: alerts %q, want at least the 8 of issue 14", RulesFile, names)
	}
	for _, a := range names {
		if !fires[a] {
			t.Errorf("%s: no test in which %s fires", RulesTestFile, a)
		}
		if silent[a] < 3 {
			t.Errorf("%s: %s tested silent %d times in %q, want at least 3 (start, middle, end)", RulesTestFile, a, silent[a], healthyTest)
		}
	}
}

// TestRunbooks checks that every alert has a summary and a runbook_url
// that points at a section of docs/runbooks.md named after the alert.
func TestRunbooks(t *testing.T) {
	doc, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	groups := parseRules(t)
	const base = "https://example.com/app/blob/main/docs/runbooks.md#"
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: alert %s has no summary", RulesFile, r.Alert)
			}
			if want := base + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: alert %s: runbook_url %q, want %q", RulesFile, r.Alert, r.Annotations["runbook_url"], want)
			}
			if !strings.Contains(string(doc), "\n## "+r.Alert+"\n") {
				t.Errorf("docs/runbooks.md: no section \"## %s\"", r.Alert)
			}
		}
	}
}

// TestClusterConfig checks the test cluster's Prometheus configuration
// (test/cluster/manifests/prometheus.yaml, ConfigMap prometheus-config)
// with promtool, as e2e.sh fills in its namespace.
func TestClusterConfig(t *testing.T) {
	data, err := os.ReadFile("../../test/cluster/manifests/prometheus.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const key = "  prometheus.yml: |\n"
	_, config, ok := strings.Cut(string(data), key)
	if !ok {
		t.Fatalf("prometheus.yaml: no %q", key)
	}
	config, _, _ = strings.Cut(config, "\n---\n")
	var b strings.Builder
	for line := range strings.Lines(config) {
		b.WriteString(strings.TrimPrefix(line, "    "))
	}
	file := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(b.String(), "${APP_NAMESPACE}", "ud615")), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(runPromtool(t, "check", "config", "--syntax-only", file))
}
