// Command rollout watches a rolling update under load: it sends requests at a
// steady rate and prints, once a second, how many failed and which versions
// answered, then a summary. It exits 1 if any request failed, 2 for bad flags.
//
//	rollout -url https://HOST/version [-rate 200] [-concurrency 16] [-duration 60s]
//	        [-ramp-to N [-ramp-for 60s]]
//	        [-cacert ca.pem | -insecure] [-login-file FILE | -login user:password]
//	        [-login-every N] [-keepalive=false] [-timeout 2s]
//
// With -ramp-to the rate rises (or falls) linearly from -rate to N requests
// per second over -ramp-for, then stays at N: a load ramp, to watch a
// HorizontalPodAutoscaler act.
//
// With a login it logs in once (POST /login on the same host, HTTP Basic) and
// sends the token as "Authorization: Bearer …" to -url, typically /secure.
// With -login-every N as well, every Nth request is a login again, as users
// keep logging in, and the requests after it send its token: a login is a
// request of the load, and a refused one (429 from auth's or the edge's
// rate limits too) a failed request. Keep the logins within those limits
// for a load from one address (the summary counts the logins).
// The login, user:password, comes from the file -login-file names, else from
// -login (which every user of the machine sees in ps), else from the
// environment variable ROLLOUT_LOGIN.
//
// With -keepalive=false every request opens a new TCP and TLS connection and
// closes it, as a curl loop does, so a Service or load balancer that balances
// connections sees each request; the summary line says which mode ran.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"example.com/app/internal/rollout"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
		os.Exit(2)
	case errors.Is(err, errFailed):
		os.Exit(1) // the summary has said how many
	default:
		fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
		os.Exit(1)
	}
}

// errFailed is returned by run when some requests failed.
var errFailed = errors.New("some requests failed")

// usageError is a bad flag or argument: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// loginEnv is the environment variable with the login, user:password, used
// when neither -login nor -login-file is given.
const loginEnv = "ROLLOUT_LOGIN"

// run is main with the process's globals passed in, so tests can call it.
// The attack stops early when ctx is cancelled; the summary is still printed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "`URL` to send GET requests to, e.g. https://HOST/version (required)")
	rate := fs.Int("rate", 200, "requests per second (at the start, with -ramp-to)")
	rampTo := fs.Int("ramp-to", 0, "if set, move the rate linearly from -rate to this many requests per second over -ramp-for, then keep it")
	rampFor := fs.Duration("ramp-for", 60*time.Second, "how long the ramp to -ramp-to takes")
	concurrency := fs.Uint64("concurrency", 16, "initial number of workers; more are added when all are busy")
	duration := fs.Duration("duration", 60*time.Second, "how long to send requests; 0 means until interrupted")
	timeout := fs.Duration("timeout", 2*time.Second, "per-request timeout")
	caCert := fs.String("cacert", "", "PEM `file` of the CA to trust instead of the system roots")
	insecure := fs.Bool("insecure", false, "do not verify the server's TLS certificate")
	login := fs.String("login", "", "`user:password` to log in with at /login on the same host; the token is sent as a Bearer token. "+
		"Visible to every user in ps: prefer -login-file or "+loginEnv)
	loginFile := fs.String("login-file", "", "`file` holding user:password for the login, instead of -login")
	loginEvery := fs.Int("login-every", 0, "with a login, make every `N`th request a login again (POST /login), whose token the next ones send; 0: log in once")
	keepAlive := fs.Bool("keepalive", true, "reuse connections; false opens a new TCP and TLS connection for every request, as a curl loop does")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected arguments %q", fs.Args())
	case *target == "":
		return usagef("-url is required")
	case *rate <= 0:
		return usagef("-rate %d: must be positive", *rate)
	case *rampTo < 0:
		return usagef("-ramp-to %d: must be positive (0: no ramp)", *rampTo)
	case *rampTo > 0 && *rampFor <= 0:
		return usagef("-ramp-for %s: must be positive", *rampFor)
	case *concurrency == 0:
		return usagef("-concurrency 0: must be positive")
	case *duration < 0:
		return usagef("-duration %s: must not be negative", *duration)
	case *timeout <= 0:
		return usagef("-timeout %s: must be positive", *timeout)
	case *caCert != "" && *insecure:
		return usagef("-cacert and -insecure exclude each other")
	case *loginEvery < 0:
		return usagef("-login-every %d: must not be negative", *loginEvery)
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("-url %q: want http://HOST/PATH or https://HOST/PATH", *target)
	}
	user, password, hasLogin, err := credentials(fs, *login, *loginFile, getenv)
	if err != nil {
		return err
	}

	tlsConfig, err := newTLSConfig(*caCert, *insecure)
	if err != nil {
		return err
	}
	if *insecure {
		fmt.Fprintln(stderr, "rollout: warning: -insecure: the server's TLS certificate is not verified")
	}
	transport := rollout.NewTransport(tlsConfig)
	transport.DisableKeepAlives = !*keepAlive // the login's connection too

	if *loginEvery > 0 && !hasLogin {
		return usagef("-login-every needs a login: -login-file, -login or %s", loginEnv)
	}

	header := http.Header{}
	var relogin *rollout.Relogin
	if hasLogin {
		loginURL, err := rollout.LoginURL(*target)
		if err != nil {
			return err
		}
		if *loginEvery > 0 {
			relogin = &rollout.Relogin{URL: loginURL, User: user, Password: password, Every: *loginEvery}
		}
		token, err := rollout.Login(ctx, &http.Client{Transport: transport, Timeout: *timeout}, loginURL, user, password)
		if err != nil {
			return err
		}
		header.Set("Authorization", "Bearer "+token)
		fmt.Fprintf(stdout, "logged in at %s as %q\n", loginURL, user)
	}

	rep, err := rollout.Run(ctx, stdout, rollout.Options{
		URL:       *target,
		Rate:      *rate,
		RampTo:    *rampTo,
		RampFor:   *rampFor,
		Workers:   *concurrency,
		Duration:  *duration,
		Timeout:   *timeout,
		Header:    header,
		Transport: transport,
		// Run marks the requests Close, whatever the transport.
		DisableKeepAlives: !*keepAlive,
		Relogin:           relogin,
	})
	if err != nil {
		return err
	}
	if rep.Failures.Total() > 0 {
		return errFailed
	}
	return nil
}

// credentials returns the login's user and password from -login-file, -login
// or the environment, in that order; ok is false if there is none. Giving
// both flags is an error. Errors never contain the password.
func credentials(fs *flag.FlagSet, login, loginFile string, getenv func(string) string) (user, password string, ok bool, err error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var from, value string
	switch {
	case set["login"] && set["login-file"]:
		return "", "", false, usagef("-login and -login-file exclude each other")
	case set["login-file"]:
		b, err := os.ReadFile(loginFile)
		if err != nil {
			return "", "", false, fmt.Errorf("-login-file: %w", err) // exit 1, as for -cacert
		}
		from = "-login-file " + loginFile
		value = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	case set["login"]:
		from, value = "-login", login
	case getenv(loginEnv) != "":
		from, value = loginEnv, getenv(loginEnv)
	default:
		return "", "", false, nil
	}
	user, password, found := strings.Cut(value, ":")
	if !found || user == "" || strings.ContainsAny(value, "\r\n") {
		return "", "", false, usagef("%s: want one line user:password", from)
	}
	return user, password, true, nil
}

// newTLSConfig returns nil (the system roots) unless caFile or insecure is set.
func newTLSConfig(caFile string, insecure bool) (*tls.Config, error) {
	switch {
	case insecure:
		return &tls.Config{InsecureSkipVerify: true}, nil // asked for with -insecure, and warned about
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate found", caFile)
		}
		return &tls.Config{RootCAs: pool}, nil
	}
	return nil, nil
}
