package check

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"example.com/app/internal/testbin"
	"example.com/app/internal/token"
)

// DashboardFile is the Grafana dashboard, relative to this package.
const DashboardFile = "../dashboard.json"

// targetLabels are the labels Prometheus adds to every scraped series from
// Kubernetes service discovery: namespace and instance are set by the
// Prometheus Operator's PodMonitor, GKE's PodMonitoring and the test
// cluster's scrape config alike; job and pod by the first and the last.
var targetLabels = []string{"namespace", "instance", "job", "pod"}

// external are the series the queries may name that the app does not
// export, each with its labels: kube-state-metrics' (v2) Deployment series
// and Prometheus' own ALERTS. Nothing in make test runs these exporters; the
// names are from their documentation.
var external = map[string][]string{
	// kube-state-metrics, docs/metrics/workload/deployment-metrics.md
	"kube_deployment_status_condition":            {"deployment", "condition", "status", "reason"},
	"kube_deployment_status_replicas_unavailable": {"deployment"},
	"kube_deployment_status_replicas_ready":       {"deployment"},
	"kube_deployment_spec_replicas":               {"deployment"},
	// Prometheus: one series per alert pending or firing, with its labels.
	"ALERTS": {"alertname", "alertstate", "severity", "service"},
}

// exported maps each series name the binaries export to its label names
// and, per label, the values seen; series lists each series' labels.
type exported map[string]map[string]map[string]bool

var series = map[string][]map[string]string{}

// scrape reads a /metrics answer into e.
func (e exported) scrape(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	add := func(name string, lbls map[string]string) {
		series[name] = append(series[name], lbls)
		if e[name] == nil {
			e[name] = map[string]map[string]bool{}
		}
		for k, v := range lbls {
			if e[name][k] == nil {
				e[name][k] = map[string]bool{}
			}
			e[name][k][v] = true
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			lbls := map[string]string{}
			for _, lp := range m.GetLabel() {
				lbls[lp.GetName()] = lp.GetValue()
			}
			switch f.GetType().String() {
			case "HISTOGRAM":
				add(name+"_count", lbls)
				add(name+"_sum", lbls)
				for _, b := range m.GetHistogram().GetBucket() {
					withLe := maps.Clone(lbls)
					withLe["le"] = model.FloatString(b.GetUpperBound()).String()
					add(name+"_bucket", withLe)
				}
				withLe := maps.Clone(lbls)
				withLe["le"] = "+Inf"
				add(name+"_bucket", withLe)
			default:
				add(name, lbls)
			}
		}
	}
}

// liveMetrics starts the real auth, hello and monolith, sends each the
// requests that make every route's series appear (a login, a wrong password,
// /secure with and without a token, a 404), and a hello started as a bad
// release (FAULT=error-rate=1) the same, and returns what their /metrics
// then export.
func liveMetrics(t *testing.T) exported {
	t.Helper()
	dir := t.TempDir()
	bins, err := testbin.Build(dir, "-X main.version=1.0.0 -X main.commit=monitoring", "auth", "hello", "monolith")
	if err != nil {
		t.Fatal(err)
	}
	keyDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(keyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	keys, _, err := token.WriteKeyPair(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	private := []string{"JWT_PRIVATE_KEY_FILE=" + keys.Private, "DEMO_USER=true", "SHUTDOWN_DRAIN=0s"}
	public := []string{"JWT_PUBLIC_KEYS_FILE=" + keys.Public, "SHUTDOWN_DRAIN=0s"}
	e := exported{}
	for _, s := range []struct {
		name string
		env  []string
	}{
		{"auth", private},
		{"hello", public},
		{"monolith", private},
		// A bad release, for the 5xx codes the error ratios select.
		{"hello", append(slices.Clone(public), "FAULT=error-rate=1")},
	} {
		p := testbin.Start(t, bins[s.name], s.env)
		p.WaitReady(t)
		base := "http://" + p.HTTP
		send := func(method, path, user, password, bearer string) {
			req, err := http.NewRequest(method, base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if user != "" {
				req.SetBasicAuth(user, password)
			}
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // only the metrics matter
			resp.Body.Close()
		}
		for _, path := range []string{"/", "/version", "/.well-known/jwks.json", "/no-such-route"} {
			send(http.MethodGet, path, "", "", "")
		}
		send(http.MethodPost, "/login", "user", "password", "")
		send(http.MethodPost, "/login", "user", "wrong", "")
		send(http.MethodGet, "/secure", "", "", "")
		send(http.MethodGet, "/secure", "", "", "eyJhbGciOiJFZERTQSJ9.e30.c2ln")
		e.scrape(t, "http://"+p.Health+"/metrics")
	}
	return e
}

// promql parses expressions as Prometheus does by default.
var promql = parser.NewParser(parser.Options{})

// A query names a PromQL expression and where it comes from.
type query struct {
	where, expr string
}

// ruleQueries returns the rules file's expressions and the recording rules'
// names with the labels their series keep (their by clause).
func ruleQueries(t *testing.T) ([]query, map[string][]string) {
	t.Helper()
	groups := parseRules(t)
	var qs []query
	recorded := map[string][]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			qs = append(qs, query{fmt.Sprintf("%s: %s", RulesFile, name), r.Expr})
			if r.Record == "" {
				continue
			}
			e, err := promql.ParseExpr(r.Expr)
			if err != nil {
				continue // reported by the caller's parse
			}
			recorded[r.Record] = outputLabels(e, recorded)
		}
	}
	return qs, recorded
}

// outputLabels returns the labels a recording rule's series keep: those of
// its aggregations' by clauses, and those of the recorded series it reads.
func outputLabels(e parser.Expr, recorded map[string][]string) []string {
	out := []string{}
	add := func(ls []string) {
		for _, l := range ls {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			if !n.Without {
				add(n.Grouping)
			}
		case *parser.VectorSelector:
			add(recorded[n.Name])
		}
		return nil
	})
	return out
}

// dashboard is the part of Grafana's dashboard model the check reads.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(DashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", DashboardFile, err)
	}
	return d
}

// grafanaVars are the values the dashboard's variables stand for when its
// queries are parsed: Grafana replaces them before sending a query.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__interval", "1m",
	"$__range", "1h",
	"$namespace", "ud615",
	"$service", "hello",
)

// labelValuesQuery is Grafana's variable query label_values(METRIC, LABEL).
var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// dashboardQueries returns the dashboard's queries, variables replaced, and
// checks that no variable is left that the check does not know.
func dashboardQueries(t *testing.T, d dashboard) []query {
	t.Helper()
	var qs []query
	for _, p := range d.Panels {
		for i, tg := range p.Targets {
			expr := grafanaVars.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("%s: panel %q query %d: a variable the check does not know: %s", DashboardFile, p.Title, i, tg.Expr)
			}
			qs = append(qs, query{fmt.Sprintf("%s: panel %q", DashboardFile, p.Title), expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if obj, ok := v.Query.(map[string]any); ok {
			q, _ = obj["query"].(string)
		}
		m := labelValuesQuery.FindStringSubmatch(grafanaVars.Replace(q))
		if m == nil {
			t.Errorf("%s: variable %s: query %v, want label_values(METRIC, LABEL)", DashboardFile, v.Name, v.Query)
			continue
		}
		// As a query: the selector, grouped by the label it lists.
		qs = append(qs, query{fmt.Sprintf("%s: variable %s", DashboardFile, v.Name), fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
	}
	return qs
}

// TestQueriesNameExportedSeries parses every PromQL expression of the rules
// and the dashboard and checks each series it selects against what the real
// binaries export (or a recording rule, or an external exporter listed in
// external): the name, every label it matches, groups or joins on, and the
// values of labels matched exactly or by a list of alternatives (route
// templates, outcomes, reasons).
func TestQueriesNameExportedSeries(t *testing.T) {
	live := liveMetrics(t)
	for _, name := range []string{"http_requests_total", "http_request_duration_seconds_bucket", "login_attempts_total", "token_rejections_total", "app_build_info"} {
		if live[name] == nil {
			t.Fatalf("the binaries' /metrics have no %s; got %v", name, slices.Sorted(maps.Keys(live)))
		}
	}
	rq, recorded := ruleQueries(t)
	d := readDashboard(t)
	qs := append(rq, dashboardQueries(t, d)...)
	if len(qs) < 30 {
		t.Fatalf("%d queries, want the rules' and the dashboard's", len(qs))
	}

	// labelsOf returns the labels a series name may carry, and the values
	// seen per label (nil when the values are not known here).
	labelsOf := func(name string) (map[string]bool, map[string]map[string]bool, bool) {
		known := map[string]bool{"__name__": true}
		for _, l := range targetLabels {
			known[l] = true
		}
		switch {
		case live[name] != nil:
			for l := range live[name] {
				known[l] = true
			}
			return known, live[name], true
		case recorded[name] != nil:
			for _, l := range recorded[name] {
				known[l] = true
			}
			return known, nil, true
		}
		if ls, ok := external[name]; ok {
			for _, l := range ls {
				known[l] = true
			}
			return known, nil, true
		}
		return nil, nil, false
	}
	allLabels := map[string]bool{}
	for _, name := range slices.Concat(slices.Collect(maps.Keys(live)), slices.Collect(maps.Keys(recorded)), slices.Collect(maps.Keys(external))) {
		ls, _, _ := labelsOf(name)
		maps.Copy(allLabels, ls)
	}

	for _, q := range qs {
		e, err := promql.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, q.expr)
			continue
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			switch n := n.(type) {
			case *parser.VectorSelector:
				known, values, ok := labelsOf(n.Name)
				if !ok {
					t.Errorf("%s: series %q: not exported by auth, hello or the monolith, not recorded by %s, not in the external list", q.where, n.Name, RulesFile)
					return nil
				}
				for _, m := range n.LabelMatchers {
					if !known[m.Name] {
						t.Errorf("%s: %s: label %q: %s has no such label (it has %v)", q.where, n, m.Name, n.Name, slices.Sorted(maps.Keys(known)))
						continue
					}
					if values == nil || values[m.Name] == nil {
						continue
					}
					if missing := missingValues(m, values[m.Name]); len(missing) > 0 {
						t.Errorf("%s: %s: label %s: %q match no value exported (got %v)", q.where, n, m.Name, missing, slices.Sorted(maps.Keys(values[m.Name])))
					}
				}
				// And all the matchers at once: one exported series they
				// select (a 5xx under the route, not only a 5xx somewhere).
				if values != nil && !slices.ContainsFunc(series[n.Name], func(l map[string]string) bool {
					for _, m := range n.LabelMatchers {
						if m.Name == "__name__" || slices.Contains(targetLabels, m.Name) {
							continue
						}
						if !m.Matches(l[m.Name]) {
							return false
						}
					}
					return true
				}) {
					t.Errorf("%s: %s: selects none of the series the binaries export", q.where, n)
				}
			case *parser.AggregateExpr:
				for _, l := range n.Grouping {
					if !allLabels[l] {
						t.Errorf("%s: %s by (%s): no series has label %q", q.where, n.Op, strings.Join(n.Grouping, ", "), l)
					}
				}
			case *parser.BinaryExpr:
				if n.VectorMatching == nil {
					return nil
				}
				for _, l := range slices.Concat(n.VectorMatching.MatchingLabels, n.VectorMatching.Include) {
					if !allLabels[l] {
						t.Errorf("%s: on/group_left (%s): no series has label %q", q.where, l, l)
					}
				}
			}
			return nil
		})
	}
}

// missingValues returns the values or alternatives of m that match no
// value in seen: m's value for = and !=, and for =~ and !~ each alternative
// of the regexp ("/secure|/login", "5..") matched against the whole value.
func missingValues(m *labels.Matcher, seen map[string]bool) []string {
	var alts []string
	switch m.Type {
	case labels.MatchEqual, labels.MatchNotEqual:
		alts = []string{regexp.QuoteMeta(m.Value)}
	default:
		alts = strings.Split(m.Value, "|")
	}
	var missing []string
	for _, alt := range alts {
		re, err := regexp.Compile("^(?:" + alt + ")$")
		if err != nil || !slices.ContainsFunc(slices.Collect(maps.Keys(seen)), re.MatchString) {
			missing = append(missing, alt)
		}
	}
	return missing
}
