// Package service turns a route table into a running service: it reads the
// configuration, builds the logger, metrics, token signer and users, wraps
// the routes in the middleware every service runs, serves the app API and
// the ops port, and shuts down gracefully.
//
// A request to the app port flows through
//
//	RequestID → Identify → Observe → Recover → LimitBody → router → (route label) → fault → handler
//
// (see package middleware), and the ops port serves the probes and /metrics.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"

	"example.com/app/internal/config"
	"example.com/app/internal/fault"
	"example.com/app/internal/handlers"
	"example.com/app/internal/health"
	"example.com/app/internal/logging"
	"example.com/app/internal/metrics"
	"example.com/app/internal/middleware"
	"example.com/app/internal/server"
	"example.com/app/internal/token"
	"example.com/app/internal/user"
)

// MaxBodySize is the largest request body accepted. The API takes no bodies:
// credentials and tokens travel in headers.
const MaxBodySize = 64 << 10

// Service describes one binary.
type Service struct {
	Name            string       // "auth", "hello" or "monolith"
	Version, Commit string       // set at build time
	Needs           config.Needs // which optional settings it reads
	API             func(Deps) *mux.Router
}

// Deps are what the route tables' handlers are built from.
type Deps struct {
	Logger      *zap.Logger
	Metrics     *metrics.Metrics
	Verifier    *token.Verifier       // checks tokens; every service has one
	Issuer      *token.Issuer         // signs tokens: nil unless the service Needs config.Login
	Users       *user.Store           // nil unless the service Needs config.Login
	LoginLimits *handlers.LoginLimits // likewise
	Build       handlers.Build
}

// Main runs s as the process: it reads os.Args and the environment, serves
// until SIGTERM or SIGINT, and returns the exit status: 0 after a clean
// shutdown or -h, 2 for a configuration error, 1 for any other.
func Main(s Service) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // after the first signal, a second one kills at once
	err := Run(ctx, s, os.Args, os.Getenv, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrInvalid):
		fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", s.Name, err)
		return 1
	}
}

// Run is Main with the process's globals passed in, so that tests can call
// it. It serves until ctx is done.
func Run(ctx context.Context, s Service, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.Parse(args, getenv, stderr, s.Needs)
	if err != nil {
		return err
	}
	logOpts := logging.Options{Level: cfg.LogLevel, Format: cfg.LogFormat}
	logger, flush, err := logging.New(stderr, logOpts, false)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	defer flush()
	logger = logger.With(zap.String("service", s.Name))
	accessLog, flushAccess, err := logging.New(stderr, logOpts, true)
	if err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	defer flushAccess()
	accessLog = accessLog.With(zap.String("service", s.Name))

	logger.Info("starting", zap.String("version", s.Version), zap.String("commit", s.Commit))
	if cfg.Fault.Kind != fault.None {
		logger.Warn("FAULT is set: this is a deliberately bad release", zap.Stringer("fault", cfg.Fault))
	}
	if cfg.Fault.Kind == fault.CrashOnStart {
		return errors.New("crashing on start, as FAULT=crash-on-start asks")
	}
	if cfg.KeysGenerated {
		logger.Warn("dev mode: no signing key is set, so an Ed25519 key pair was generated; tokens will not survive a restart")
	}
	if cfg.HS256 {
		logger.Warn("HS256: tokens are signed with a shared secret, so every service holding it can mint tokens; use Ed25519 key files (JWT_PRIVATE_KEY_FILE, JWT_PUBLIC_KEYS_FILE) beyond the course's first steps")
	}

	app, err := New(s, cfg, logger, accessLog)
	if err != nil {
		return err
	}
	logger.Info("keys", keyFields(app.Deps)...)
	if cfg.KeyFiles != (token.KeyFiles{}) {
		watchCtx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			cfg.KeyFiles.Watch(watchCtx, cfg.KeysReload, cfg.Keys, func(ks token.Keys) error { return app.Deps.setKeys(ks) },
				func(err error) { logger.Error("reloading keys failed; keeping the old ones", zap.Error(err)) })
		}()
		defer func() { stopWatch(); <-watched }()
	}
	return server.Run(ctx, logger, server.Lifecycle{
		Ready:    func() { becomeReady(ctx, logger, app.Probe, cfg.Fault) },
		Drain:    app.Probe.Drain,
		DrainFor: cfg.ShutdownDrain,
		Timeout:  cfg.ShutdownTimeout,
	},
		server.Server{Name: "http", Addr: cfg.HTTPAddr, Handler: app.API},
		server.Server{Name: "health", Addr: cfg.HealthAddr, Handler: app.Ops},
	)
}

// App is a service's handlers, ready to serve.
type App struct {
	API   http.Handler // the app port: s.API's routes in the middleware chain
	Ops   http.Handler // the ops port: probes and metrics
	Probe *health.Probe
	Deps  Deps
}

// New builds s's handlers from cfg. The access log gets one line per request.
func New(s Service, cfg *config.Config, logger, accessLog *zap.Logger) (*App, error) {
	d := Deps{
		Logger:  logger,
		Metrics: metrics.New(metrics.Build{Service: s.Name, Version: s.Version, Commit: s.Commit}, token.Reasons),
		Build:   handlers.Build{Service: s.Name, Version: s.Version, Commit: s.Commit},
	}
	var err error
	if d.Verifier, err = token.NewVerifier(cfg.Keys.Accept, cfg.Token); err != nil {
		return nil, fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	if s.Needs&config.Login != 0 {
		if cfg.Keys.Signing == nil {
			return nil, fmt.Errorf("%w: no signing key", config.ErrInvalid)
		}
		if d.Issuer, err = token.NewIssuer(*cfg.Keys.Signing, cfg.Token); err != nil {
			return nil, fmt.Errorf("%w: %w", config.ErrInvalid, err)
		}
		if d.Users, err = loadUsers(logger, cfg.UsersFile); err != nil {
			return nil, fmt.Errorf("%w: USERS_FILE: %w", config.ErrInvalid, err)
		}
		d.LoginLimits = handlers.DefaultLoginLimits(cfg.TrustedProxies)
	}

	probe := health.New()
	api := s.API(d)
	// The fault inside the route label: an injected error is counted under
	// its route template, as a real one would be, so the SLO rules
	// (monitoring/rules.yaml) see it.
	middleware.LabelRoutes(api, cfg.Fault.Middleware)
	api.NotFoundHandler = handlers.NotFound()
	api.MethodNotAllowedHandler = handlers.MethodNotAllowed(api)

	pod := hostname()
	wrap := func(h http.Handler, name string) http.Handler {
		return middleware.Chain(h,
			middleware.RequestID,
			middleware.Identify(s.Version, pod),
			middleware.Observe(accessLog, d.Metrics, name),
			middleware.Recover(logger),
			middleware.LimitBody(MaxBodySize),
		)
	}
	return &App{
		API:   wrap(api, "http"),
		Ops:   wrap(newOps(probe, d.Metrics), "health"),
		Probe: probe,
		Deps:  d,
	}, nil
}

// newOps returns the ops port's routes: probes, their toggles and metrics.
// It is never exposed through a Service or the edge.
func newOps(probe *health.Probe, m *metrics.Metrics) *mux.Router {
	r := mux.NewRouter()
	r.Handle(health.LivenessPath, probe.Liveness()).Methods(http.MethodGet, http.MethodHead)
	r.Handle(health.ReadinessPath, probe.Readiness()).Methods(http.MethodGet, http.MethodHead)
	r.Handle(health.LivenessTogglePath, probe.ToggleLiveness()).Methods(http.MethodGet, http.MethodPost)
	r.Handle(health.ReadinessTogglePath, probe.ToggleReadiness()).Methods(http.MethodGet, http.MethodPost)
	r.Handle(health.MetricsPath, m.Handler()).Methods(http.MethodGet)
	middleware.LabelRoutes(r)
	r.NotFoundHandler = handlers.NotFound()
	r.MethodNotAllowedHandler = handlers.MethodNotAllowed(r)
	return r
}

// setKeys applies keys re-read from their files.
func (d Deps) setKeys(ks token.Keys) error {
	// Accept first: the set includes the new signing key's public part.
	if err := d.Verifier.SetKeys(ks.Accept); err != nil {
		return err
	}
	if d.Issuer != nil {
		if ks.Signing == nil {
			return errors.New("no signing key")
		}
		if err := d.Issuer.SetKey(*ks.Signing); err != nil {
			return err
		}
	}
	d.Logger.Info("keys reloaded", keyFields(d)...)
	return nil
}

// keyFields name the keys d signs with and accepts, by ID.
func keyFields(d Deps) []zap.Field {
	var accepted []string
	for _, k := range d.Verifier.Keys() {
		accepted = append(accepted, k.ID)
	}
	fields := []zap.Field{zap.Strings("accepted", accepted)}
	if d.Issuer != nil {
		fields = append(fields, zap.String("signing", d.Issuer.KeyID()))
	}
	return fields
}

// loadUsers reads the users file; without one (config allows it only with
// DEMO_USER=true or in dev mode) the demo user can log in, said loudly.
func loadUsers(logger *zap.Logger, file string) (*user.Store, error) {
	if file == "" {
		logger.Warn(`DEMO_USER: the demo user "user" with password "password" can log in; set USERS_FILE instead anywhere but the course`)
		return user.Demo(), nil
	}
	users, err := user.Load(file)
	if err != nil {
		return nil, err
	}
	logger.Info("loaded users", zap.String("file", file), zap.Int("users", users.Len()))
	return users, nil
}

// becomeReady makes the probe ready, unless f says the release is bad.
func becomeReady(ctx context.Context, logger *zap.Logger, probe *health.Probe, f fault.Fault) {
	switch f.Kind {
	case fault.NeverReady:
		logger.Warn("never becoming ready, as FAULT=never-ready asks")
	case fault.SlowStart:
		logger.Warn("becoming ready late, as FAULT asks", zap.Duration("after", f.Duration))
		t := time.AfterFunc(f.Duration, func() { probe.SetReady(true); logger.Info("ready") })
		context.AfterFunc(ctx, func() { t.Stop() })
	default:
		probe.SetReady(true)
		logger.Info("ready")
	}
}

// hostname names the pod in Kubernetes, where it is the pod's name.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}
