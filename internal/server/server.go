// Package server runs a service's HTTP servers and shuts them down without
// losing a request.
//
// Shutdown follows what a rolling update needs. On cancel, the service first
// stops being ready, then keeps serving for the drain period while load
// balancers and kube-proxy notice and stop sending; only then do the servers
// stop accepting and wait for in-flight requests to finish.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Server is one listener and what it serves.
type Server struct {
	Name    string // "http" or "health", for logs
	Addr    string // host:port; port 0 picks a free one
	Handler http.Handler
}

// Lifecycle is what Run calls at each stage.
type Lifecycle struct {
	Ready func() // every server is listening
	Drain func() // shutdown began: stop being ready

	DrainFor time.Duration // serve on after Drain
	Timeout  time.Duration // then wait this long for in-flight requests
}

// Limits every server gets. The idle timeout must be longer than nginx's
// upstream keepalive_timeout (60s), or nginx reuses a connection the service
// has just closed and answers 502.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Run listens on every server's address, then serves until ctx is done or a
// server fails. A listen error (a port in use) is returned before anything is
// served. After ctx is done it drains and shuts down as Lifecycle says, and
// returns nil if every in-flight request finished in time.
func Run(ctx context.Context, logger *zap.Logger, lc Lifecycle, servers ...Server) error {
	listeners := make([]net.Listener, 0, len(servers))
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close() //nolint:errcheck // closing after a failure; the failure is what matters
		}
	}
	for _, s := range servers {
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("%s server: %w", s.Name, err) // names the address: "listen tcp :8080: bind: address already in use"
		}
		listeners = append(listeners, ln)
	}

	failed := make(chan error, len(servers))
	https := make([]*http.Server, len(servers))
	for i, s := range servers {
		log := logger.With(zap.String("server", s.Name))
		https[i] = &http.Server{
			Handler:           s.Handler,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          zap.NewStdLog(log),
		}
		log.Info("listening", zap.String("addr", listeners[i].Addr().String()))
		go func() {
			if err := https[i].Serve(listeners[i]); !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("%s server: %w", s.Name, err)
			}
		}()
	}
	if lc.Ready != nil {
		lc.Ready()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-failed:
		logger.Error("server failed", zap.Error(serveErr))
	}

	if lc.Drain != nil {
		lc.Drain()
	}
	// Close each kept-alive connection after its next answer. A proxy such
	// as nginx pools connections, and a pooled connection goes on reaching
	// this process after it has left the Service's endpoints; closing them
	// now sends the proxy's next requests to the ready replicas, during the
	// drain rather than at shutdown.
	for _, srv := range https {
		srv.SetKeepAlivesEnabled(false)
	}
	if serveErr == nil && lc.DrainFor > 0 {
		logger.Info("draining: readiness fails, requests are still served", zap.Duration("for", lc.DrainFor))
		time.Sleep(lc.DrainFor)
	}
	logger.Info("shutting down: waiting for in-flight requests", zap.Duration("timeout", lc.Timeout))
	// Not ctx: it is done, and a deadline from it would cut requests off at once.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lc.Timeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(https))
	for i, srv := range https {
		wg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				errs[i] = fmt.Errorf("%s server: shutting down: %w", servers[i].Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, serveErr)...); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
