package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// LoginURL returns the /login URL on the same scheme and host as target.
func LoginURL(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/login"}).String(), nil
}

// Login posts to loginURL with HTTP Basic credentials and returns the token
// from the JSON answer {"token": "..."}. Errors never contain the password or
// the token.
func Login(ctx context.Context, client *http.Client, loginURL, user, password string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, loginURL, nil)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login: POST %s as %q: %s", loginURL, user, resp.Status)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&body); err != nil {
		return "", fmt.Errorf("login: POST %s: decoding the answer: %w", loginURL, err)
	}
	if body.Token == "" {
		return "", fmt.Errorf("login: POST %s: the answer has no token", loginURL)
	}
	return body.Token, nil
}

// Relogin makes an attack log in again as it goes, as users do: every
// Every-th request is a POST to URL with HTTP Basic credentials instead of
// the attack's own, and the requests sent after its answer carry its token
// as "Authorization: Bearer …". A login is a request like the others: it
// counts in the rate, and a refused or failed one (a 429 from a rate limit
// too) is a failed request. The versions that answered logins are reported
// as LoginVersionPrefix+VERSION, apart from the attack's own.
type Relogin struct {
	URL            string // e.g. LoginURL(target)
	User, Password string
	Every          int // at least 1
}

// LoginVersionPrefix marks the versions that answered logins in a report.
const LoginVersionPrefix = "login/"

// targets hands out the attack's requests: the target with the latest
// token, and every relogin.Every-th time a login. Workers call next
// concurrently; the aggregator sets the token from each login's answer.
type targets struct {
	url     string
	header  http.Header
	relogin *Relogin
	basic   http.Header // the login's header
	n       atomic.Uint64
	mu      sync.Mutex
	bearer  string // "Bearer …" from the last login answered, or ""
}

func newTargets(url string, header http.Header, relogin *Relogin) *targets {
	t := &targets{url: url, header: header, relogin: relogin}
	if relogin != nil {
		req, _ := http.NewRequest(http.MethodPost, relogin.URL, nil) // checked by Run
		req.SetBasicAuth(relogin.User, relogin.Password)
		t.basic = http.Header{"Authorization": req.Header["Authorization"]}
	}
	return t
}

func (t *targets) next(tgt *vegeta.Target) error {
	if t.relogin != nil && t.n.Add(1)%uint64(t.relogin.Every) == 0 {
		*tgt = vegeta.Target{Method: http.MethodPost, URL: t.relogin.URL, Header: t.basic}
		return nil
	}
	header := t.header
	t.mu.Lock()
	if t.bearer != "" {
		header = header.Clone()
		header.Set("Authorization", t.bearer)
	}
	t.mu.Unlock()
	*tgt = vegeta.Target{Method: http.MethodGet, URL: t.url, Header: header}
	return nil
}

// isLogin reports whether r is one of the logins next handed out.
func (t *targets) isLogin(r *vegeta.Result) bool {
	return t.relogin != nil && r.Method == http.MethodPost && r.URL == t.relogin.URL
}

// loggedIn takes the token of a login's answer r. It reports false if a
// successful answer has none: a failed request too.
func (t *targets) loggedIn(r *vegeta.Result) bool {
	if r.Code != http.StatusOK {
		return true // failed or not by its status
	}
	var body struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(r.Body, &body) != nil || body.Token == "" {
		return false
	}
	t.mu.Lock()
	t.bearer = "Bearer " + body.Token
	t.mu.Unlock()
	return true
}
