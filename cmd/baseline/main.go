// Command baseline serves one of the two independent baselines that `make
// bench-http` measures the services against, in a process of its own:
//
//	plain  a bare net/http handler answering hello's greeting on every path
//	jwt    the same, after verifying the request's bearer token with
//	       golang-jwt v5 (Ed25519, issuer, audience, expiry), on every request
//
// The handlers are package baseline's, which shares no code with the
// services on purpose.
//
//	baseline -kind plain|jwt -http 127.0.0.1:0 [-public-key jwt-public.pem]
//
// It logs {"msg":"listening","addr":…} once bound, and serves until SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"example.com/app/internal/baseline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "baseline: %v\n", err)
		os.Exit(1)
	}
}

// run is main with the process's globals passed in, so tests can call it.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "which baseline: plain or jwt")
	addr := fs.String("http", "127.0.0.1:0", "`address` to serve on")
	publicKey := fs.String("public-key", "", "PEM `file` of the Ed25519 public key tokens are signed with (jwt only)")
	issuer := fs.String("issuer", "auth.service", "the iss claim required (jwt only)")
	audience := fs.String("audience", "app", "the aud claim required (jwt only)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var h http.Handler
	switch *kind {
	case "plain":
		h = baseline.Plain()
	case "jwt":
		pem, err := os.ReadFile(*publicKey)
		if err != nil {
			return fmt.Errorf("-public-key: %w", err)
		}
		key, err := jwt.ParseEdPublicKeyFromPEM(pem)
		if err != nil {
			return fmt.Errorf("-public-key %s: %w", *publicKey, err)
		}
		h = baseline.JWT(key, *issuer, *audience)
	default:
		return fmt.Errorf("-kind is %q, want plain or jwt", *kind)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "{\"msg\":\"listening\",\"kind\":%q,\"addr\":%q}\n", *kind, ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	context.AfterFunc(ctx, func() { srv.Close() }) //nolint:errcheck // stopping: nothing to report
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
