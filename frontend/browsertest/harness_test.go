package browsertest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"example.com/app/internal/edge"
	"example.com/app/internal/edge/edgetest"
	"example.com/app/internal/testbin"
	"example.com/app/internal/token"
)

// The directories of the UI and of the app's module, found from this
// package's directory, frontend/browsertest.
var frontendDir, repoRoot string

// keys are the run's token key pair, written by TestMain: auth signs with
// the private key, hello holds the public key only.
var keys token.KeyFiles

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	if frontendDir, err = filepath.Abs(".."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(frontendDir)
	keyDir, err := os.MkdirTemp("", "browsertest-keys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(keyDir) //nolint:errcheck // a temporary directory; nothing to do if it stays
	if keys, _, err = token.WriteKeyPair(keyDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	browser.close()
	if build.dir != "" {
		os.RemoveAll(build.dir) //nolint:errcheck // a temporary directory; nothing to do if it stays
	}
	return code
}

// build holds the binaries, built once for the tests that need them.
var build struct {
	once sync.Once
	dir  string
	bins map[string]string
	err  error
}

// binaries returns the paths of "auth" and "hello" at version 1.0.0 and
// "hello-2" at 2.0.0, built the first time a test asks.
func binaries(t *testing.T) map[string]string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "browsertest-bin-")
		if build.err == nil {
			build.bins, build.err = buildBinaries(build.dir)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bins
}

func buildBinaries(dir string) (map[string]string, error) {
	bins := map[string]string{}
	for _, b := range []struct {
		version string
		pkgs    []string
		suffix  string
	}{{"1.0.0", []string{"auth", "hello"}, ""}, {"2.0.0", []string{"hello"}, "-2"}} {
		built, err := testbin.Build(filepath.Join(dir, b.version), "-X main.version="+b.version+" -X main.commit=browsertest", b.pkgs...)
		if err != nil {
			return nil, err
		}
		for name, path := range built {
			bins[name+b.suffix] = path
		}
	}
	return bins, nil
}

// serviceEnv is the whole environment of service, "auth" or "hello": its
// keys (auth signs and logs in the demo user; hello only verifies, and
// refuses a private key) and quick shutdowns.
func serviceEnv(service string, extra ...string) []string {
	e := []string{"SHUTDOWN_DRAIN=0s", "SHUTDOWN_TIMEOUT=5s"}
	if service == "auth" {
		e = append(e, "JWT_PRIVATE_KEY_FILE="+keys.Private, "DEMO_USER=true")
	} else {
		e = append(e, "JWT_PUBLIC_KEYS_FILE="+keys.Public)
	}
	return append(e, extra...)
}

// startService runs one of binaries' binaries until the test ends and waits
// until it is ready.
func startService(t *testing.T, name string, env []string, args ...string) *testbin.Process {
	t.Helper()
	p := testbin.Start(t, binaries(t)[name], env, args...)
	p.WaitReady(t)
	return p
}

// startEdge runs nginx with frontend.conf.template as in Kubernetes, with
// the given app addresses as the Services' and /ui/ served from frontend/.
func startEdge(t *testing.T, auth, hello []string) *edgetest.Edge {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(repoRoot, "nginx", "frontend.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	return edgetest.Start(t, string(tmpl), edge.Params{Auth: auth, Hello: hello, UIDir: frontendDir})
}

// stack is auth and some hello instances behind the edge.
type stack struct {
	auth   *testbin.Process
	hellos []*testbin.Process
	edge   *edgetest.Edge
}

func startStack(t *testing.T, hellos int, helloEnv []string) *stack {
	t.Helper()
	s := &stack{auth: startService(t, "auth", serviceEnv("auth"))}
	var addrs []string
	for range hellos {
		h := startService(t, "hello", helloEnv)
		s.hellos = append(s.hellos, h)
		addrs = append(addrs, h.HTTP)
	}
	s.edge = startEdge(t, []string{s.auth.HTTP}, addrs)
	return s
}

// browser is the one Chromium of the test run; each test gets its own tab.
var browser sharedBrowser

type sharedBrowser struct {
	once    sync.Once
	ctx     context.Context
	cancel  []context.CancelFunc // in the order made
	dataDir string
	err     error
}

// close stops Chromium, if it was started, and removes its profile.
func (b *sharedBrowser) close() {
	for i := len(b.cancel) - 1; i >= 0; i-- {
		b.cancel[i]()
	}
	if b.dataDir != "" {
		os.RemoveAll(b.dataDir) //nolint:errcheck // a temporary directory
	}
}

// installHint says how to get a browser for these tests.
const installHint = "install Chromium: `apt-get install chromium` (Debian), `apt-get install chromium-browser` (Ubuntu), or set CHROMIUM to a Chrome or Chromium binary"

// findChromium returns the path of Chromium (or Chrome): $CHROMIUM if set,
// else the first of the usual names on PATH.
func findChromium() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium or Chrome on PATH")
}

// newTab returns a new tab of the test run's headless Chromium, closed when
// the test ends, whose actions all end within timeout. Without Chromium the
// test fails saying how to install it; a developer may set SKIP_BROWSER=1 to
// skip it instead, which CI ignores. -short skips it.
func newTab(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test in Chromium")
	}
	path, err := findChromium()
	if err != nil {
		if os.Getenv("SKIP_BROWSER") == "1" && !edgetest.InCI() {
			t.Skipf("SKIP_BROWSER=1: %v", err)
		}
		t.Fatalf("%v: %s; outside CI, SKIP_BROWSER=1 skips the browser tests", err, installHint)
	}
	browser.once.Do(func() { browser.err = startBrowser(path) })
	if browser.err != nil {
		t.Fatalf("starting %s: %v", path, browser.err)
	}
	tab, cancel := chromedp.NewContext(browser.ctx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(tab, timeout)
	t.Cleanup(cancelTimeout)
	return ctx
}

func startBrowser(path string) error {
	dir, err := os.MkdirTemp("", "browsertest-chromium-")
	if err != nil {
		return err
	}
	browser.dataDir = dir
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir), // a fresh profile: no cache, no cookies
		chromedp.Headless,
		chromedp.NoSandbox, // as root, in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 900),
		// No connections of Chromium's own: the machine's network is closed,
		// and the tests must not depend on one.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Loopback only: every other host name fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost"),
		// The edge's certificate is made afresh for each test, by a CA the
		// browser does not know. Only this test browser, which talks to
		// nothing but the loopback edge, ignores the error.
		chromedp.IgnoreCertErrors,
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser.cancel = append(browser.cancel, cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	browser.cancel = append(browser.cancel, cancel)
	browser.ctx = ctx
	// The first Do starts the browser for the life of ctx (chromedp's
	// docs/API.md, example 21); each tab bounds its own actions.
	return chromedp.Do(ctx)
}

// recorder keeps what a tab reports that a test may check: console
// messages, requests that failed, and the responses.
type recorder struct {
	mu        sync.Mutex
	console   []string // errors and warnings: console API calls, uncaught exceptions, the browser's log
	failed    []string // requests that got no answer, or were blocked
	responses []*network.Response
}

func record(t *testing.T, ctx context.Context) *recorder {
	t.Helper()
	r := &recorder{}
	err := chromedp.Listen(ctx, func(ev any) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				r.console = append(r.console, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			text := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				text += " " + ev.ExceptionDetails.Exception.Description
			}
			r.console = append(r.console, "uncaught: "+text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				r.console = append(r.console, fmt.Sprintf("%s %s: %s %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		case *network.EventLoadingFailed:
			r.failed = append(r.failed, fmt.Sprintf("%s request %s: %s %s", ev.Type, ev.RequestID, ev.ErrorText, ev.BlockedReason))
		case *network.EventResponseReceived:
			r.responses = append(r.responses, ev.Response)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// problems returns the console errors and warnings and the failed requests
// so far, and forgets them.
func (r *recorder) problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := append(r.console, r.failed...)
	r.console, r.failed = nil, nil
	return p
}

// responsesTo returns the responses so far whose URL's path starts with prefix.
func (r *recorder) responsesTo(prefix string) []*network.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*network.Response
	for _, resp := range r.responses {
		if i := strings.Index(resp.URL, "://"); i >= 0 {
			if j := strings.IndexByte(resp.URL[i+3:], '/'); j >= 0 && strings.HasPrefix(resp.URL[i+3+j:], prefix) {
				out = append(out, resp)
			}
		}
	}
	return out
}

// open loads the UI from e in tab and waits until its script has run.
func open(t *testing.T, tab context.Context, e *edgetest.Edge) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Navigate(e.URL+"/ui/")); err != nil {
		t.Fatalf("opening %s/ui/: %v", e.URL, err)
	}
	// app.js writes the origin last, once everything is wired up.
	waitFor(t, tab, `document.getElementById("origin").textContent !== ""`, "app.js to run")
}

// waitFor waits up to 10 s for the JavaScript expression cond to be true.
func waitFor(t *testing.T, tab context.Context, cond, what string) {
	t.Helper()
	waitForWithin(t, tab, cond, what, 10*time.Second)
}

func waitForWithin(t *testing.T, tab context.Context, cond, what string, timeout time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(timeout))); err != nil {
		page, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s (%s): %v; the page says:\n%s", what, cond, err, page)
	}
}

// text returns the text of the element with the given ID.
func text(t *testing.T, tab context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(tab, chromedp.TextContent(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("reading #%s: %v", id, err)
	}
	return strings.TrimSpace(s)
}

// do runs actions in tab; a failure ends the test.
func do(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in tab, awaiting a promise, and
// decodes its value into T.
func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// writeArtifact writes a file for people to look at into $ARTIFACTS, else
// artifacts/ at the repository's root (git-ignored), and returns its path.
func writeArtifact(t *testing.T, name string, content []byte) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot, "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
