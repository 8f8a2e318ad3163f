// Command cloudlb is a TEST DOUBLE of a cloud provider's layer-4 load
// balancer in front of a Service with externalTrafficPolicy: Local, for the
// test cluster, where none runs. It listens on -listen, checks each node's
// healthCheckNodePort as the -profile's provider does, and forwards each new
// connection to a node it considers healthy. Package
// example.com/app/test/cluster/lb says what it copies, with sources, and
// what it does not model.
//
//	cloudlb -listen HOST:PORT -profile gke|gke-rbs|aws-elb|aws-nlb
//	        -backend NODE_IP:NODEPORT,HEALTHCHECKNODEPORT [-backend …]
//	        [-interval 10s] [-timeout 6s] [-unhealthy-threshold 2] [-healthy-threshold 2]
//	        [-fail-open=false] [-reset-on-unhealthy=false]
//
// The timing flags override the profile's, so a Service's annotations (the
// eks overlay's aws-load-balancer-healthcheck-*) can be passed as they are.
// It logs JSON lines on stderr: "listening" with the address once bound, and
// every change of a node's health with a timestamp, so a test can say when
// the load balancer steered away. It serves until SIGTERM or SIGINT, then
// closes every connection and exits 0; bad flags exit 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"example.com/app/internal/logging"
	"example.com/app/test/cluster/lb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stderr)
	stop()
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "cloudlb: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "cloudlb: %v\n", err)
		os.Exit(1)
	}
}

// usageError is a bad flag or argument: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// backends is the repeatable -backend flag.
type backends []lb.Node

func (b *backends) String() string { return fmt.Sprint(*b) }

// Set takes NODE_IP:NODEPORT,HEALTHCHECKNODEPORT: the health check goes to
// the same node.
func (b *backends) Set(v string) error {
	addr, hcPort, ok := strings.Cut(v, ",")
	host, _, err := net.SplitHostPort(addr)
	if !ok || err != nil {
		return fmt.Errorf("%q: want NODE_IP:NODEPORT,HEALTHCHECKNODEPORT", v)
	}
	if _, err := strconv.ParseUint(hcPort, 10, 16); err != nil {
		return fmt.Errorf("%q: health check port %q is no port number", v, hcPort)
	}
	*b = append(*b, lb.Node{Addr: addr, HealthAddr: net.JoinHostPort(host, hcPort)})
	return nil
}

// run is main with the process's globals passed in, so tests can call it.
// It serves until ctx is cancelled.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "frontend `HOST:PORT` to accept connections on (required)")
	profileName := fs.String("profile", "", "provider profile (required): "+strings.Join(lb.ProfileNames(), ", "))
	var nodes backends
	fs.Var(&nodes, "backend", "a node, `NODE_IP:NODEPORT,HEALTHCHECKNODEPORT`; repeat for each node (at least one)")
	interval := fs.Duration("interval", 0, "health check interval (default: the profile's)")
	timeout := fs.Duration("timeout", 0, "health check timeout, at most the interval (default: the profile's)")
	unhealthy := fs.Int("unhealthy-threshold", 0, "failed checks in a row that make a node unhealthy (default: the profile's)")
	healthy := fs.Int("healthy-threshold", 0, "passed checks in a row that make a node healthy (default: the profile's)")
	failOpen := fs.Bool("fail-open", false, "with no healthy node, send new connections to every node (default: the profile's)")
	reset := fs.Bool("reset-on-unhealthy", false, "reset the open connections of a node that turns unhealthy (default: the profile's)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if *profileName == "" {
		return usageError{"-profile is required: " + strings.Join(lb.ProfileNames(), ", ")}
	}
	p, err := lb.LookupProfile(*profileName)
	if err != nil {
		return usageError{"-profile: " + err.Error()}
	}
	// Only the flags given override the profile.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "interval":
			p.Interval = *interval
		case "timeout":
			p.Timeout = *timeout
		case "unhealthy-threshold":
			p.UnhealthyThreshold = *unhealthy
		case "healthy-threshold":
			p.HealthyThreshold = *healthy
		case "fail-open":
			p.FailOpen = *failOpen
		case "reset-on-unhealthy":
			p.ResetOnUnhealthy = *reset
		}
	})
	cfg := lb.Config{Listen: *listen, Nodes: nodes, Profile: p}
	if err := cfg.Validate(); err != nil {
		return usageError{strings.ReplaceAll(err.Error(), "\n", "; ")}
	}

	logger, flush, err := logging.New(stderr, logging.Options{Level: "info", Format: "json"}, false)
	if err != nil {
		return err
	}
	defer flush()
	b, err := lb.New(cfg, logger)
	if err != nil {
		return err // a port in use: exit 1
	}
	return b.Serve(ctx)
}
