// Package rollout sends HTTP requests at a steady rate and reports, second by
// second, which versions answered and which requests failed. It is the core
// of cmd/rollout, the load tester that watches a rolling update.
//
// Pacing, workers and latency quantiles come from vegeta's attack and metrics
// packages (github.com/tsenart/vegeta/v12/lib). The load is open: requests
// leave at the configured rate whether or not earlier ones have been answered,
// so a slow server shows up as latency and timeouts, not as a lower rate.
package rollout

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// VersionHeader is the response header every service response carries.
const VersionHeader = "X-App-Version"

// maxBody bounds how much of each response body is kept to look for a
// "version" field; the rest is read and discarded.
const maxBody = 64 << 10

// Options configure an attack.
type Options struct {
	URL  string // the target, e.g. https://localhost:8443/version
	Rate int    // requests per second (at the start, with RampTo)
	// RampTo, if positive, moves the rate linearly from Rate to RampTo
	// requests per second over RampFor, then keeps it there: a load ramp.
	RampTo   int
	RampFor  time.Duration
	Workers  uint64        // initial number of workers; vegeta adds more when all are busy
	Duration time.Duration // how long to attack; 0 means until ctx is cancelled
	Timeout  time.Duration // per request, including reading the body; 0 means 2s
	Header   http.Header   // sent with every request, e.g. Authorization
	// DisableKeepAlives sends every request on a new connection (TCP, and
	// TLS for https) that is closed after it, as a curl loop does, instead
	// of reusing connections: requests are marked Close. That holds over
	// HTTP/1.1, which NewTransport speaks. Go's HTTP/2 client does not keep
	// to it (one run here: 268 connections and 27 timeouts for 50 requests).
	DisableKeepAlives bool
	// Transport sends the requests; nil means NewTransport(nil).
	Transport http.RoundTripper
	// Relogin, if set, makes every Relogin.Every-th request a login whose
	// token the later requests carry instead of Header's Authorization.
	Relogin *Relogin
}

// Failures counts failed requests by kind.
type Failures struct {
	Connect   uint64 // no connection could be made: refused, unreachable, TLS handshake
	Timeout   uint64 // the client's timeout expired
	Status5xx uint64
	Status4xx uint64
	Other     uint64 // e.g. the connection was reset after the request was sent
}

// Total returns the number of failed requests.
func (f Failures) Total() uint64 {
	return f.Connect + f.Timeout + f.Status5xx + f.Status4xx + f.Other
}

func (f *Failures) add(k kind) {
	switch k {
	case kindConnect:
		f.Connect++
	case kindTimeout:
		f.Timeout++
	case kind5xx:
		f.Status5xx++
	case kind4xx:
		f.Status4xx++
	case kindOther:
		f.Other++
	}
}

// VersionCount is how many responses one version gave. First and Last are
// the send times, since the start of the attack, of the first and last
// request it answered.
type VersionCount struct {
	Version     string
	Count       uint64
	First, Last time.Duration
}

// Second is what happened during one second of the attack: the requests that
// completed in it.
type Second struct {
	Elapsed  time.Duration // end of this second, since the start of the attack
	Requests uint64
	Failures Failures
	Versions []VersionCount // in order of first appearance in the whole attack
	P50, P99 time.Duration
}

// Report summarizes an attack.
type Report struct {
	Requests uint64
	Failures Failures
	Versions []VersionCount // in order of first appearance
	Seconds  []Second
	P50, P90 time.Duration
	P99, Max time.Duration
	Rate     float64       // requests sent per second
	Duration time.Duration // from the first request sent to the last
	Errors   []string      // distinct error messages, at most maxErrors
	// DisableKeepAlives is the connection mode, as in Options.
	DisableKeepAlives bool
	// Connections is how many TCP connections were made: Requests with
	// DisableKeepAlives, far fewer without.
	Connections uint64
	// Logins is how many of the requests were logins (Options.Relogin),
	// LoginFailures how many of those failed.
	Logins, LoginFailures uint64
	Relogin               bool // whether the attack logged in again as it went
}

const maxErrors = 5

// Run attacks o.URL until o.Duration has passed or ctx is cancelled, writes
// one line per second and then a summary to w, and returns the report.
// Requests in flight when the attack stops are waited for (at most
// o.Timeout). The error is only for options that make an attack impossible;
// failed requests are in the report.
func Run(ctx context.Context, w io.Writer, o Options) (*Report, error) {
	if o.Rate <= 0 {
		return nil, fmt.Errorf("rollout: rate %d: must be positive", o.Rate)
	}
	if o.RampTo < 0 || o.RampTo > 0 && o.RampFor <= 0 {
		return nil, fmt.Errorf("rollout: ramp to %d/s over %s: want a positive rate and duration", o.RampTo, o.RampFor)
	}
	workers := max(o.Workers, 1)
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	transport := o.Transport
	if transport == nil {
		transport = NewTransport(nil)
	}
	req, err := http.NewRequest(http.MethodGet, o.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("rollout: %w", err)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" || req.URL.Host == "" {
		return nil, fmt.Errorf("rollout: url %q: want http://HOST/PATH or https://HOST/PATH", o.URL)
	}
	if r := o.Relogin; r != nil {
		if r.Every < 1 {
			return nil, fmt.Errorf("rollout: relogin every %d requests: must be at least 1", r.Every)
		}
		if u, err := url.Parse(r.URL); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("rollout: login url %q: want http://HOST/PATH or https://HOST/PATH", r.URL)
		}
	}

	// The classifier, not http.Client.Timeout, applies the timeout, so that
	// it can tell a timeout from other errors reliably.
	kinds := newKindLog()
	cl := &classifier{next: transport, timeout: timeout, log: kinds, close: o.DisableKeepAlives}
	client := &http.Client{Transport: cl}

	// At the full rate, each worker is busy for at most the timeout, so this
	// many workers keep the rate even when every request times out.
	maxWorkers := workers + uint64(math.Ceil(float64(max(o.Rate, o.RampTo))*timeout.Seconds()))

	attacker := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.Workers(workers),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.MaxBody(maxBody),
	)
	tgts := newTargets(o.URL, o.Header, o.Relogin)
	var pacer vegeta.Pacer = vegeta.Rate{Freq: o.Rate, Per: time.Second}
	if o.RampTo > 0 {
		pacer = Ramp{From: float64(o.Rate), To: float64(o.RampTo), Over: o.RampFor}
	}

	start := time.Now()
	results := attacker.Attack(tgts.next, pacer, o.Duration, "")
	stopOnCancel := context.AfterFunc(ctx, func() { attacker.Stop() })
	defer stopOnCancel()

	a := newAggregator(start, tgts)
	fmt.Fprintf(w, "attacking %s at %d requests/s", o.URL, o.Rate)
	if o.RampTo > 0 {
		fmt.Fprintf(w, ", ramping to %d/s over %s", o.RampTo, o.RampFor)
	}
	if o.Duration > 0 {
		fmt.Fprintf(w, " for %s", o.Duration)
	}
	if o.Relogin != nil {
		fmt.Fprintf(w, ", every %d a login at %s", o.Relogin.Every, o.Relogin.URL)
	}
	fmt.Fprintf(w, "\n%s\n", secondHeader)

	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for done := false; !done; {
		select {
		case r, ok := <-results:
			if !ok {
				done = true
				break
			}
			a.add(r, kinds.take(r.Seq))
		case now := <-ticker.C:
			a.endSecond(w, now)
		}
	}
	if a.cur.Requests > 0 {
		a.endSecond(w, time.Now())
	}
	rep := a.report()
	rep.DisableKeepAlives, rep.Connections = o.DisableKeepAlives, cl.opened.Load()
	rep.Relogin = o.Relogin != nil
	WriteSummary(w, rep)
	return rep, nil
}

// Ramp is a vegeta.Pacer whose rate moves linearly from From to To requests
// per second over Over, then stays at To. (vegeta's LinearPacer never stops
// rising.)
type Ramp struct {
	From, To float64
	Over     time.Duration
}

// Rate returns the rate at elapsed, in requests per second.
func (p Ramp) Rate(elapsed time.Duration) float64 {
	if elapsed >= p.Over {
		return p.To
	}
	return p.From + (p.To-p.From)*elapsed.Seconds()/p.Over.Seconds()
}

// Hits returns how many requests are due by elapsed: the area under Rate.
func (p Ramp) Hits(elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	x := min(elapsed, p.Over).Seconds()
	hits := p.From*x + (p.To-p.From)*x*x/(2*p.Over.Seconds())
	if elapsed > p.Over {
		hits += p.To * (elapsed - p.Over).Seconds()
	}
	return hits
}

// Pace returns how long to wait before the next request, as vegeta's pacers
// do: none while behind, else until the next one is due at the current rate.
func (p Ramp) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	due := p.Hits(elapsed)
	if hits == 0 || hits < uint64(due) {
		return 0, false
	}
	return time.Duration((float64(hits) + 1 - due) / p.Rate(elapsed) * float64(time.Second)), false
}

// NewTransport returns the transport Run uses by default: HTTP/1.1 only, even
// to a server that offers HTTP/2, with keep-alive and the given TLS
// configuration (nil means the system roots).
func NewTransport(tlsConfig *tls.Config) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConns = 0 // no limit
	tr.MaxIdleConnsPerHost = 1000
	return tr
}

// aggregator turns results into per-second lines and the final report.
type aggregator struct {
	start   time.Time
	targets *targets
	total   vegeta.Metrics
	second  vegeta.Metrics
	cur     Second
	rep     Report
	order   []string // versions in order of first appearance
	overall map[string]*VersionCount
	perSec  map[string]uint64
}

func newAggregator(start time.Time, t *targets) *aggregator {
	return &aggregator{start: start, targets: t, overall: map[string]*VersionCount{}, perSec: map[string]uint64{}}
}

func (a *aggregator) add(r *vegeta.Result, k kind) {
	a.total.Add(r)
	a.second.Add(r)
	a.cur.Requests++
	a.rep.Requests++
	switch {
	case r.Code >= 500:
		k = kind5xx
	case r.Code >= 400:
		k = kind4xx
	case r.Code >= 200 && r.Code < 400:
		k = kindNone
	case k == kindNone: // no status and no classified error
		k = kindOther
	}
	login := a.targets.isLogin(r)
	if login && !a.targets.loggedIn(r) && k == kindNone {
		k = kindOther // a login answered without a token
		if r.Error == "" {
			r.Error = "login: the answer has no token"
		}
	}
	a.cur.Failures.add(k)
	a.rep.Failures.add(k)
	if login {
		a.rep.Logins++
		if k != kindNone {
			a.rep.LoginFailures++
		}
	}
	if k != kindNone && r.Error != "" && len(a.rep.Errors) < maxErrors && !contains(a.rep.Errors, r.Error) {
		a.rep.Errors = append(a.rep.Errors, r.Error)
	}
	if v := versionOf(r); v != "" {
		if login {
			v = LoginVersionPrefix + v
		}
		at := r.Timestamp.Sub(a.start)
		vc, ok := a.overall[v]
		if !ok {
			vc = &VersionCount{Version: v, First: at}
			a.overall[v] = vc
			a.order = append(a.order, v)
		}
		vc.Count++
		vc.Last = max(vc.Last, at)
		a.perSec[v]++
	}
}

func (a *aggregator) endSecond(w io.Writer, now time.Time) {
	a.second.Close()
	s := a.cur
	s.Elapsed = now.Sub(a.start).Round(time.Millisecond)
	if s.Requests > 0 {
		s.P50, s.P99 = a.second.Latencies.P50, a.second.Latencies.P99
	}
	for _, v := range a.order {
		if n := a.perSec[v]; n > 0 {
			s.Versions = append(s.Versions, VersionCount{Version: v, Count: n})
		}
	}
	a.rep.Seconds = append(a.rep.Seconds, s)
	writeSecond(w, s)
	a.cur, a.second = Second{}, vegeta.Metrics{}
	clear(a.perSec)
}

func (a *aggregator) report() *Report {
	a.total.Close()
	rep := a.rep
	for _, v := range a.order {
		rep.Versions = append(rep.Versions, *a.overall[v])
	}
	if rep.Requests > 0 {
		l := a.total.Latencies
		rep.P50, rep.P90, rep.P99, rep.Max = l.P50, l.P90, l.P99, l.Max
		rep.Rate, rep.Duration = a.total.Rate, a.total.Duration
	}
	return &rep
}

// versionOf returns the version that answered r: the X-App-Version header,
// else the "version" field of a JSON body, else "".
func versionOf(r *vegeta.Result) string {
	if v := http.Header(r.Headers).Get(VersionHeader); v != "" {
		return v
	}
	var body struct {
		Version string `json:"version"`
	}
	if len(r.Body) > 0 && r.Body[0] == '{' && json.Unmarshal(r.Body, &body) == nil {
		return body.Version
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const secondHeader = "   time   reqs   fail connect timeout    5xx    4xx  other      p50      p99  versions"

func writeSecond(w io.Writer, s Second) {
	versions := "-"
	if len(s.Versions) > 0 {
		parts := make([]string, len(s.Versions))
		for i, v := range s.Versions {
			parts[i] = fmt.Sprintf("%s=%d", v.Version, v.Count)
		}
		versions = strings.Join(parts, " ")
	}
	f := s.Failures
	fmt.Fprintf(w, "%6.1fs %6d %6d %7d %7d %6d %6d %6d %8s %8s  %s\n",
		s.Elapsed.Seconds(), s.Requests, f.Total(), f.Connect, f.Timeout, f.Status5xx, f.Status4xx, f.Other,
		formatLatency(s.P50, s.Requests), formatLatency(s.P99, s.Requests), versions)
}

// WriteSummary writes rep's summary, as Run does at the end.
func WriteSummary(w io.Writer, rep *Report) {
	f := rep.Failures
	mode := "kept alive"
	if rep.DisableKeepAlives {
		mode = "new per request"
	}
	fmt.Fprintf(w, "\nsummary:  %d requests in %s (%.1f/s achieved), %d failed; connections: %s, %d opened",
		rep.Requests, rep.Duration.Round(time.Millisecond), rep.Rate, f.Total(), mode, rep.Connections)
	if rep.Relogin {
		fmt.Fprintf(w, "; logins: %d, %d failed", rep.Logins, rep.LoginFailures)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "failures: connect=%d timeout=%d 5xx=%d 4xx=%d other=%d\n",
		f.Connect, f.Timeout, f.Status5xx, f.Status4xx, f.Other)
	fmt.Fprintf(w, "versions:")
	if len(rep.Versions) == 0 {
		fmt.Fprintf(w, " none")
	}
	for _, v := range rep.Versions {
		fmt.Fprintf(w, " %s=%d (%.1fs..%.1fs)", v.Version, v.Count, v.First.Seconds(), v.Last.Seconds())
	}
	fmt.Fprintf(w, "\nlatency:  p50=%s p90=%s p99=%s max=%s\n",
		formatLatency(rep.P50, rep.Requests), formatLatency(rep.P90, rep.Requests),
		formatLatency(rep.P99, rep.Requests), formatLatency(rep.Max, rep.Requests))
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "error:    %s\n", e)
	}
}

func formatLatency(d time.Duration, n uint64) string {
	switch {
	case n == 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}
