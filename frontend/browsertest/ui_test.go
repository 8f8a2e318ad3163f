package browsertest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"example.com/app/internal/edge/edgetest"
)

// TestEdgeServesUI checks how nginx serves /ui/, without a browser: the
// types, the cache headers, the security headers kept (a location's own
// add_header would drop them), JSON errors, and / still proxied to hello.
func TestEdgeServesUI(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that runs nginx and the services")
	}
	edgetest.Binary(t) // fails or skips first if there is no nginx
	s := startStack(t, 1, serviceEnv("hello"))
	files := readUI(t)
	tests := []struct {
		path, wantType, wantCache string
		wantStatus                int
	}{
		{"/ui/", "text/html; charset=utf-8", "no-cache", 200},
		{"/ui/index.html", "text/html; charset=utf-8", "no-cache", 200},
		{"/ui/index.html?v=x", "text/html; charset=utf-8", "no-cache", 200}, // index.html is never immutable
		{"/ui/app.js?v=" + version(files["app.js"]), "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", 200},
		{"/ui/lib.js", "text/javascript; charset=utf-8", "no-cache", 200}, // without ?v=: revalidated
		{"/ui/style.css?v=" + version(files["style.css"]), "text/css; charset=utf-8", "public, max-age=31536000, immutable", 200},
		{"/ui/favicon.svg?v=" + version(files["favicon.svg"]), "image/svg+xml; charset=utf-8", "public, max-age=31536000, immutable", 200},
		{"/ui/missing.js?v=1", "application/json", "", 404}, // an error is not cached for a year
	}
	for _, tt := range tests {
		resp := get(t, s.edge.Client, s.edge.URL+tt.path, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus || resp.Header.Get("Content-Type") != tt.wantType || strings.Join(resp.Header.Values("Cache-Control"), ", ") != tt.wantCache {
			t.Errorf("GET %s = %d, Content-Type %q, Cache-Control %q; want %d, %q, %q",
				tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Values("Cache-Control"), tt.wantStatus, tt.wantType, tt.wantCache)
		}
		for _, h := range []string{"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy", "X-Request-ID"} {
			if n := len(resp.Header.Values(h)); n != 1 {
				t.Errorf("GET %s: %d %s headers, want 1", tt.path, n, h)
			}
		}
		if tt.wantStatus == 200 && tt.path != "/ui/" && !strings.Contains(tt.path, "index.html") {
			name := strings.TrimPrefix(strings.SplitN(tt.path, "?", 2)[0], "/ui/")
			if !bytes.Equal(body, files[name]) {
				t.Errorf("GET %s: body differs from frontend/%s", tt.path, name)
			}
		}
	}

	// A conditional request for index.html is answered 304: no-cache costs
	// a round trip, not a download.
	resp := get(t, s.edge.Client, s.edge.URL+"/ui/", nil)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	resp = get(t, s.edge.Client, s.edge.URL+"/ui/", http.Header{"If-None-Match": {etag}})
	resp.Body.Close()
	if etag == "" || resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /ui/ with If-None-Match %q = %d, want 304", etag, resp.StatusCode)
	}

	// /ui redirects to /ui/ without naming nginx's own port.
	resp = get(t, s.edge.Client, s.edge.URL+"/ui", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui = %d to %q, want 308 to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The API is unchanged: / is hello's, and a token is never cached (the
	// services' one Cache-Control header, not the UI's).
	resp = get(t, s.edge.Client, s.edge.URL+"/", nil)
	var hello struct{ Message string }
	json.NewDecoder(resp.Body).Decode(&hello) //nolint:errcheck // checked below
	resp.Body.Close()
	if hello.Message != "Hello" || resp.Header.Get("X-App-Version") != "1.0.0" {
		t.Errorf("GET / = %d %+v %v, want hello's answer", resp.StatusCode, hello, resp.Header)
	}
	req, _ := http.NewRequest("POST", s.edge.URL+"/login", nil)
	req.SetBasicAuth("user", "password")
	resp, err := s.edge.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Cache-Control"); resp.StatusCode != 200 || len(got) != 1 || got[0] != "no-store" {
		t.Errorf("POST /login = %d with Cache-Control %q, want 200 with only the service's no-store", resp.StatusCode, got)
	}
}

func get(t *testing.T, c *http.Client, url string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp
}

// TestPageLoads is the test 1: the page loads with no console error
// or warning (a Content-Security-Policy violation would be one) and no failed
// request, every asset it asks for has its ?v= and is served to be cached.
func TestPageLoads(t *testing.T) {
	tab := newTab(t, time.Minute)
	s := startStack(t, 1, serviceEnv("hello"))
	rec := record(t, tab)
	open(t, tab, s.edge)
	// Give late requests (the favicon) a moment to fail, if they do.
	time.Sleep(300 * time.Millisecond)
	for _, p := range rec.problems() {
		t.Errorf("loading /ui/: %s", p)
	}
	seen := map[string]bool{}
	for _, resp := range rec.responsesTo("/ui/") {
		name, query, _ := strings.Cut(resp.URL[strings.Index(resp.URL, "/ui/")+len("/ui/"):], "?")
		seen[name] = true
		wantCache := "public, max-age=31536000, immutable"
		if name == "" || name == "index.html" {
			wantCache = "no-cache"
		} else if !strings.HasPrefix(query, "v=") {
			t.Errorf("the page asked for %s without ?v=", resp.URL)
		}
		if got := header(resp, "Cache-Control"); resp.Status != 200 || got != wantCache {
			t.Errorf("%s: status %d, Cache-Control %q; want 200, %q", resp.URL, resp.Status, got, wantCache)
		}
		if header(resp, "Content-Security-Policy") == "" {
			t.Errorf("%s: no Content-Security-Policy", resp.URL)
		}
	}
	for name := range readUI(t) {
		if name != "index.html" && !seen[name] {
			t.Errorf("loading /ui/ did not fetch %s", name)
		}
	}
	if title, err := chromedp.Run(tab, chromedp.Title()); err != nil || !strings.Contains(title, "rollout") {
		t.Errorf("title = %q, %v; want the UI's", title, err)
	}
}

// header returns a response header as the browser got it, "" if missing.
func header(resp *network.Response, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// TestLibrary runs the pure functions of lib.js in Chromium: the decoding,
// percentiles and buckets the page shows.
func TestLibrary(t *testing.T) {
	tab := newTab(t, time.Minute)
	e := startEdge(t, []string{edgetest.FreeAddr(t)}, []string{edgetest.FreeAddr(t)})
	open(t, tab, e)

	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tok := b64(`{"alg":"HS256","typ":"JWT"}`) + "." + b64(`{"sub":"zoë","aud":"app","exp":1700003600}`) + ".c2lnbmF0dXJl"
	basic, _ := http.NewRequest("GET", "/", nil)
	basic.SetBasicAuth("zoë", "pässwörd:1")
	tests := []struct{ expr, want string }{
		{fmt.Sprintf("lib.decodeJWT(%q)", tok), `{"header":{"alg":"HS256","typ":"JWT"},"claims":{"aud":"app","exp":1700003600,"sub":"zoë"}}`},
		{fmt.Sprintf("lib.decodeJWT(%q).claims", b64(`{"a":1}`)+"==."+b64(`{"b":"?>"}`)+"."), `{"b":"?>"}`}, // padding, and - and _
		{`throws(() => lib.decodeJWT("a.b"))`, `"not a JWT: 2 part(s), want 3 separated by dots"`},
		{`throws(() => lib.decodeJWT("a.b.c"))`, `"not a JWT: its header is not base64url-encoded JSON"`},
		{fmt.Sprintf("throws(() => lib.decodeJWT(%q))", b64("[1]")+"."+b64("{}")+"."), `"not a JWT: its header is not a JSON object"`},
		{fmt.Sprintf("lib.decodeJWT(lib.withClaims(%q, {sub: \"admin\"})).claims", tok), `{"aud":"app","exp":1700003600,"sub":"admin"}`},
		{fmt.Sprintf("lib.withClaims(%q, {sub: \"admin\"}).split(\".\")[2]", tok), `"c2lnbmF0dXJl"`}, // the signature is kept
		{`lib.basicAuth("zoë", "pässwörd:1")`, strconv.Quote(basic.Header.Get("Authorization"))},
		{`lib.describeExpiry(3600, 0)`, `"expires in 60 min"`},
		{`lib.describeExpiry(30, 0)`, `"expires in 30 s"`},
		{`lib.describeExpiry(-120, 0)`, `"expired 2 min ago"`},
		{`lib.describeExpiry(7 * 3600, 0)`, `"expires in 7.0 h"`},
		{`lib.describeExpiry(undefined, 0)`, `"has no expiry (no exp claim)"`},
		{`lib.parseChallenge('Bearer realm="app", error="invalid_token"')`, `{"params":{"error":"invalid_token","realm":"app"},"scheme":"Bearer"}`},
		{`lib.parseChallenge('Basic realm="a \\"b\\"", charset=UTF-8')`, `{"params":{"charset":"UTF-8","realm":"a \"b\""},"scheme":"Basic"}`},
		{`lib.percentile([], 50)`, `null`}, // NaN
		{`lib.percentile([5, 1, 3, 2, 4], 50)`, `3`},
		{`lib.percentile([7], 99)`, `7`},
		{`lib.percentile(Array.from({length: 100}, (_, i) => 100 - i), 99)`, `99`},
		{`lib.percentile(Array.from({length: 100}, (_, i) => i + 1), 100)`, `100`},
		{`lib.percentile([10, 2, 30], 1)`, `2`},
		{`lib.bucketBySecond([{t: 10500, version: "1", ok: true}, {t: 10999, version: "2", ok: true}, {t: 11000, version: "", ok: false},
			{t: 13001, version: "2", ok: true}, {t: 9999, version: "1", ok: true}, {t: 14000, version: "1", ok: true}], 10, 13)`,
			`[{"failures":0,"second":10,"total":2,"versions":{"1":1,"2":1}},{"failures":1,"second":11,"total":1,"versions":{}},` +
				`{"failures":0,"second":12,"total":0,"versions":{}},{"failures":0,"second":13,"total":1,"versions":{"2":1}}]`},
		{`["1.10.0", "2.0.0", "1.9.0", "1.0.0", "1.0.0-rc1"].sort(lib.compareVersions)`, `["1.0.0","1.0.0-rc1","1.9.0","1.10.0","2.0.0"]`},
		{`lib.formatMs(1.234)`, `"1.2 ms"`},
		{`lib.formatMs(123.4)`, `"123 ms"`},
		{`lib.formatMs(NaN)`, `"–"`},
		{`lib.explainFailure({what: "Login", status: 401, body: {error: "wrong user name or password"}, challenge: 'Basic realm="app"'})`,
			`"Login failed: wrong user name or password (HTTP 401)."`},
		{`lib.explainFailure({what: "Login", status: 429, body: {error: "slow down"}, retryAfter: "3"})`, `"Login failed: slow down (HTTP 429). Retry in 3 s."`},
		{`lib.explainFailure({what: "Call", status: 502, body: {error: "bad gateway"}})`,
			`"Call failed: the edge is up, but the service behind it did not answer: “bad gateway” (HTTP 502)."`},
		{`lib.explainFailure({what: "Call", err: new TypeError("Failed to fetch")})`,
			`"Call failed: could not reach the edge (Failed to fetch). Is it running, and is this the right address?"`},
	}
	for _, tt := range tests {
		got := eval[string](t, tab, `(async () => {
			const lib = await import("/ui/lib.js");
			const throws = (f) => { try { f(); return "no error"; } catch (e) { return e.message; } };
			return JSON.stringify(`+tt.expr+`);
		})()`)
		if normalize(t, got) != normalize(t, tt.want) {
			t.Errorf("%s = %s, want %s", tt.expr, got, tt.want)
		}
	}
}

// normalize returns JSON with its object keys sorted, for comparing.
func normalize(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLoginAndSecure is the tests 2 and 3: a wrong password, the
// course's user and the token's claims, the secure call with the token, with
// a tampered one, and with the edge unreachable.
func TestLoginAndSecure(t *testing.T) {
	tab := newTab(t, time.Minute)
	s := startStack(t, 1, serviceEnv("hello"))
	rec := record(t, tab)
	open(t, tab, s.edge)

	// A wrong password, typed and sent with the keyboard.
	do(t, tab, "logging in with a wrong password",
		chromedp.SendKeys(chromedp.ID("user"), "user"),
		chromedp.SendKeys(chromedp.ID("password"), "not-the-password\n"),
	)
	waitFor(t, tab, `document.getElementById("login-status").classList.contains("error")`, "the login error")
	if got, want := text(t, tab, "login-status"), "Login failed: wrong user name or password (HTTP 401)."; got != want {
		t.Errorf("after a wrong password, the status says %q, want %q", got, want)
	}
	if hidden := eval[bool](t, tab, `document.getElementById("token-view").hidden`); !hidden {
		t.Error("after a wrong password, the token is shown")
	}

	// The course's user.
	do(t, tab, "logging in",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("password").value = ""`),
		chromedp.SendKeys(chromedp.ID("password"), "password"),
		chromedp.Click(chromedp.ID("login-button")),
	)
	waitFor(t, tab, `!document.getElementById("token-view").hidden`, "the token")
	if got := text(t, tab, "login-status"); !strings.HasPrefix(got, "Logged in. The token expires at ") {
		t.Errorf("after logging in, the status says %q", got)
	}
	claims := map[string]string{}
	for _, c := range []string{"alg", "sub", "iss", "aud", "exp", "iat", "jti"} {
		claims[c] = eval[string](t, tab, fmt.Sprintf(`document.querySelector('#claims dd[data-claim=%q]')?.textContent ?? "(none)"`, c))
	}
	for c, want := range map[string]string{"alg": `"EdDSA"`, "sub": `"user"`, "iss": `"auth.service"`, "aud": `"app"`} {
		if claims[c] != want && !(c == "aud" && claims[c] == `["app"]`) {
			t.Errorf("claim %s shown as %s, want %s", c, claims[c], want)
		}
	}
	if !regexp.MustCompile(`\(\d{10}\)$`).MatchString(claims["exp"]) || claims["jti"] == "(none)" {
		t.Errorf("claims exp and jti shown as %q and %q, want a date with its Unix time, and an ID", claims["exp"], claims["jti"])
	}
	if got, want := text(t, tab, "expiry"), "The token expires in 60 min."; got != want {
		t.Errorf("expiry shown as %q, want %q (TOKEN_TTL is 1h)", got, want)
	}
	if got := text(t, tab, "token-view"); !strings.Contains(got, "Decoded, not verified.") {
		t.Errorf("the claims are not labelled as unverified: %q", got)
	}
	if v := eval[string](t, tab, `document.getElementById("password").value`); v != "" {
		t.Error("the password field still holds the password after logging in")
	}

	// The secure call with the token.
	do(t, tab, "calling /secure", chromedp.Click(chromedp.ID("secure-call")))
	waitFor(t, tab, `document.getElementById("secure-result").classList.contains("ok")`, "the secure call's answer")
	if got := text(t, tab, "secure-result"); !strings.HasPrefix(got, "200 OK: “Hello”, user “user”. Answered by version 1.0.0 on pod ") {
		t.Errorf("after the secure call, the result says %q", got)
	}

	// With the claims changed and the signature kept.
	do(t, tab, "tampering with the token", chromedp.Click(chromedp.ID("tamper")))
	if got := eval[string](t, tab, `document.querySelector('#claims dd[data-claim="sub"]').textContent`); got != `"admin"` {
		t.Errorf("after tampering, claim sub shown as %s, want \"admin\"", got)
	}
	do(t, tab, "calling /secure with the tampered token", chromedp.Click(chromedp.ID("secure-call")))
	waitFor(t, tab, `document.getElementById("secure-result").classList.contains("error")`, "the secure call's error")
	want := `The secure call failed: the server rejected the token with “invalid token” (HTTP 401, error="invalid_token" in WWW-Authenticate).`
	if got := text(t, tab, "secure-result"); !strings.HasPrefix(got, want) {
		t.Errorf("after the tampered call, the result says %q, want it to start with %q", got, want)
	}

	// A picture of the whole page with the claims and the 401, for people.
	page, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, "login.png", page)

	// The 401s were the only problems: Chromium logs each as a failed resource.
	for _, p := range rec.problems() {
		if !strings.Contains(p, "status of 401") {
			t.Errorf("console or network: %s", p)
		}
	}

	// The edge unreachable: every request of the tab fails as if offline.
	if _, err := chromedp.Call(tab, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
		MatchedNetworkConditions: []*network.Conditions{{Offline: true}},
	}); err != nil {
		t.Fatal(err)
	}
	do(t, tab, "logging in offline",
		chromedp.SendKeys(chromedp.ID("password"), "password"),
		chromedp.Click(chromedp.ID("login-button")),
	)
	waitFor(t, tab, `document.getElementById("login-status").textContent.includes("could not reach the edge")`, "the offline error")
	if got := text(t, tab, "login-status"); !strings.HasPrefix(got, "Login failed: could not reach the edge (") {
		t.Errorf("with the edge unreachable, the status says %q", got)
	}
}

// TestRollout is the tests 4 and 5: with the rollout view polling
// /version, two hello instances are replaced one by one, 1.0.0 by 2.0.0; the
// page counts both versions and no failure. The view is then photographed,
// at desktop and phone sizes.
func TestRollout(t *testing.T) {
	const drain = 2 * time.Second // SHUTDOWN_DRAIN: short, to keep the test short
	helloEnv := serviceEnv("hello", "SHUTDOWN_DRAIN="+drain.String())
	tab := newTab(t, 2*time.Minute)
	s := startStack(t, 2, helloEnv)
	rec := record(t, tab)
	do(t, tab, "setting the viewport", chromedp.EmulateViewport(1280, 900))
	open(t, tab, s.edge)

	do(t, tab, "starting the rollout view",
		chromedp.SetValue(chromedp.ID("rate"), "20"),
		chromedp.Click(chromedp.ID("rollout-toggle")),
	)
	requests := func() int {
		n, _ := strconv.Atoi(text(t, tab, "c-requests"))
		return n
	}
	waitFor(t, tab, `Number(document.getElementById("c-requests").textContent) >= 20`, "20 requests")

	for i, old := range s.hellos {
		before := requests()
		old.Signal(t, syscall.SIGTERM)
		if code := old.Wait(t, drain+10*time.Second); code != 0 {
			t.Errorf("hello %d after SIGTERM exited %d, want 0", i, code)
		}
		startService(t, "hello-2", helloEnv, "-http="+old.HTTP)
		t.Logf("hello %d at %s replaced by 2.0.0 while the page sent %d requests", i, old.HTTP, requests()-before)
	}
	// Let the last seconds of the timeline be all 2.0.0.
	waitForWithin(t, tab, `document.querySelector('#legend li[data-version="2.0.0"] .share')?.textContent === "(100% of the last 5 s)"`,
		"2.0.0 to answer everything", 15*time.Second)
	time.Sleep(2 * time.Second)
	do(t, tab, "stopping the rollout view", chromedp.Click(chromedp.ID("rollout-toggle")))
	// Requests in flight finish, and are counted, after the stop.
	for last := -1; requests() != last; time.Sleep(500 * time.Millisecond) {
		last = requests()
	}

	total, failures := requests(), text(t, tab, "c-failures")
	count := func(version string) int {
		n, _ := strconv.Atoi(eval[string](t, tab, fmt.Sprintf(`document.querySelector('#legend li[data-version=%q] .count')?.textContent ?? "0"`, version)))
		return n
	}
	v1, v2 := count("1.0.0"), count("2.0.0")
	t.Logf("the page counted %d requests: %d answered by 1.0.0, %d by 2.0.0, %s failed; p50 %s, p99 %s",
		total, v1, v2, failures, text(t, tab, "c-p50"), text(t, tab, "c-p99"))
	if failures != "0" || v1 == 0 || v2 == 0 || v1+v2 != total {
		t.Errorf("the page counted %d requests, %d by 1.0.0, %d by 2.0.0, %s failed; want both versions and no failure (last failure: %q)",
			total, v1, v2, failures, text(t, tab, "last-failure"))
	}
	for _, id := range []string{"c-p50", "c-p99"} {
		if got := text(t, tab, id); !strings.HasSuffix(got, " ms") {
			t.Errorf("#%s = %q, want a latency in ms", id, got)
		}
	}
	// The page counted what the edge served: one log line per request,
	// written once answered.
	served := 0
	for deadline := time.Now().Add(5 * time.Second); served != total && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		served = 0
		for _, entry := range s.edge.AccessLog(t) {
			if strings.HasPrefix(entry.String("request"), "GET /version ") && entry.String("status") == "200" {
				served++
			}
		}
	}
	if served != total {
		t.Errorf("nginx served %d GET /version, the page counted %d", served, total)
	}
	for _, p := range rec.problems() {
		t.Errorf("console or network: %s", p)
	}

	screenshot(t, tab, "rollout.png")
	// A phone: the page fits its width, and the view still reads.
	do(t, tab, "emulating a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	if overflow := eval[int](t, tab, `document.documentElement.scrollWidth - window.innerWidth`); overflow > 0 {
		t.Errorf("at 390 px wide, the page is %d px too wide: it scrolls sideways", overflow)
	}
	screenshot(t, tab, "rollout-phone.png")
}

// screenshot writes a PNG of the rollout view to the artifacts and checks
// its size against the element's.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	img, err := chromedp.Run(tab, chromedp.Screenshot(chromedp.ID("rollout")))
	if err != nil {
		t.Fatalf("screenshot of #rollout: %v", err)
	}
	path := writeArtifact(t, name, img)
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	box := eval[struct {
		Width  float64 `json:"width"`
		Height float64 `json:"height"`
		Scale  float64 `json:"scale"`
	}](t, tab,
		`(() => { const r = document.getElementById("rollout").getBoundingClientRect(); return {width: r.width, height: r.height, scale: devicePixelRatio}; })()`)
	wantW, wantH := int(box.Width*box.Scale+0.5), int(box.Height*box.Scale+0.5)
	if abs(cfg.Width-wantW) > 2 || abs(cfg.Height-wantH) > 2 || cfg.Width < 300 || cfg.Height < 300 {
		t.Errorf("%s is %dx%d, want about %dx%d (the view's box), and at least 300x300", path, cfg.Width, cfg.Height, wantW, wantH)
	}
	t.Logf("wrote %s (%dx%d)", path, cfg.Width, cfg.Height)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// TestAccessibility checks what a machine can of the "accessible":
// every control is labelled, results are live regions, the page can be used
// with the keyboard alone and shows where the focus is, and text and bars
// have enough contrast (WCAG AA) in the light and the dark color scheme.
func TestAccessibility(t *testing.T) {
	tab := newTab(t, time.Minute)
	s := startStack(t, 1, serviceEnv("hello"))
	open(t, tab, s.edge)

	// Keyboard only: the skip link first, then the form, submitted with Enter.
	focused := func() (id, outline string) {
		f := eval[[]string](t, tab, `[document.activeElement.id || document.activeElement.className,
			getComputedStyle(document.activeElement).outlineStyle + " " + getComputedStyle(document.activeElement).outlineWidth]`)
		return f[0], f[1]
	}
	for _, want := range []string{"skip", "user"} {
		do(t, tab, "pressing Tab", chromedp.KeyEvent("\t"))
		if id, outline := focused(); id != want || outline != "solid 3px" {
			t.Errorf("after Tab, the focus is on %q with outline %q, want %q with a visible outline", id, outline, want)
		}
	}
	do(t, tab, "typing the user name", chromedp.KeyEvent("user\tpassword\n"))
	waitFor(t, tab, `!document.getElementById("token-view").hidden`, "the token after a login with the keyboard")
	// Something in each result region, for the contrast checks below.
	do(t, tab, "tampering and calling /secure", chromedp.Click(chromedp.ID("tamper")), chromedp.Click(chromedp.ID("secure-call")))
	waitFor(t, tab, `document.getElementById("secure-result").classList.contains("error")`, "the secure call's error")

	for _, p := range eval[[]string](t, tab, `(() => {
		const problems = [];
		if (!document.documentElement.lang) problems.push("<html> has no lang");
		for (const el of document.querySelectorAll("input, select, textarea")) {
			if (el.labels.length === 0) problems.push("#" + el.id + " has no label");
		}
		for (const el of document.querySelectorAll("button, a[href]")) {
			if (!el.textContent.trim()) problems.push(el.outerHTML.slice(0, 60) + " has no text");
		}
		for (const id of ["login-status", "secure-result", "rollout-news"]) {
			const el = document.getElementById(id);
			if (el.getAttribute("role") !== "status" && !el.getAttribute("aria-live")) problems.push("#" + id + " is not a live region");
		}
		if (document.getElementById("timeline").getAttribute("role") !== "img" || !document.getElementById("timeline").getAttribute("aria-label")) {
			problems.push("the timeline has no role and label for screen readers");
		}
		return problems;
	})()`) {
		t.Error(p)
	}

	for _, scheme := range []string{"light", "dark"} {
		if _, err := chromedp.Call(tab, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		}); err != nil {
			t.Fatal(err)
		}
		for _, p := range eval[[]string](t, tab, contrastJS) {
			t.Errorf("%s color scheme: %s", scheme, p)
		}
	}
}

// contrastJS returns the page's contrast problems: text against the
// background behind it (4.5:1, or 3:1 for large text), and the timeline's
// colors against its background (3:1).
const contrastJS = `(() => {
	const parse = (s) => {
		s = s.trim();
		if (s.startsWith("#")) return [1, 3, 5].map((i) => parseInt(s.slice(i, i + 2), 16)).concat(1);
		const n = s.match(/[\d.]+/g).map(Number);
		return n.length === 3 ? n.concat(1) : n;
	};
	const lum = (c) => {
		const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
		return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
	};
	const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
	const background = (el) => {
		for (; el; el = el.parentElement) {
			const c = parse(getComputedStyle(el).backgroundColor);
			if (c[3] > 0) return c;
		}
		return [255, 255, 255, 1];
	};
	const problems = [];
	for (const el of document.body.querySelectorAll("*")) {
		const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
		if (!own || el.closest("[hidden], .visually-hidden, svg, :disabled") || el.getClientRects().length === 0) continue;
		const style = getComputedStyle(el);
		const size = parseFloat(style.fontSize);
		const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
		const r = ratio(parse(style.color), background(el));
		if (r < (large ? 3 : 4.5)) {
			problems.push("text " + JSON.stringify(el.textContent.trim().slice(0, 40)) + " has contrast " + r.toFixed(2));
		}
	}
	const root = getComputedStyle(document.documentElement);
	const bg = parse(root.getPropertyValue("--bg"));
	for (const v of ["--v0", "--v1", "--v2", "--v3", "--v4", "--v5", "--fail"]) {
		const r = ratio(parse(root.getPropertyValue(v)), bg);
		if (r < 3) problems.push("timeline color " + v + " has contrast " + r.toFixed(2) + " against --bg");
	}
	return problems;
})()`
