package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"example.com/app/internal/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = server.Run(t.Context(), zap.NewNop(), server.Lifecycle{Timeout: time.Second},
		server.Server{Name: "health", Addr: "127.0.0.1:0", Handler: http.NotFoundHandler()},
		server.Server{Name: "http", Addr: ln.Addr().String(), Handler: http.NotFoundHandler()})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "http server") {
		t.Errorf("Run on a port in use: error = %v, want one naming the server and %s", err, ln.Addr())
	}
}

// TestGracefulShutdown: after cancel, Drain is called, requests are served
// for DrainFor, and a request in flight at shutdown finishes.
func TestGracefulShutdown(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done") //nolint:errcheck // test
	})
	var drained atomic.Bool
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		result <- server.Run(ctx, zap.New(core), server.Lifecycle{
			Ready:    func() { close(ready) },
			Drain:    func() { drained.Store(true) },
			DrainFor: 300 * time.Millisecond,
			Timeout:  5 * time.Second,
		}, server.Server{Name: "http", Addr: "127.0.0.1:0", Handler: h})
	}()
	<-ready
	addr := logs.FilterMessage("listening").All()[0].ContextMap()["addr"].(string)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	slow := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- string(b)
	}()
	<-started
	cancel()
	time.Sleep(50 * time.Millisecond)
	if !drained.Load() {
		t.Error("Drain not called right after cancel")
	}
	// Still serving while draining, new connections too, but closing each
	// connection after its answer so that proxies stop reusing it.
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET during the drain: %v, want it served", err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Error("answer during the drain keeps the connection alive, want Connection: close")
	}
	time.Sleep(400 * time.Millisecond) // past the drain: Shutdown waits for /slow
	select {
	case err := <-result:
		t.Fatalf("Run returned %v with a request in flight", err)
	default:
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Errorf("in-flight request got %q, want done", got)
	}
	if err := <-result; err != nil {
		t.Errorf("Run after a clean shutdown = %v, want nil", err)
	}
	if logs.FilterMessage("stopped").Len() != 1 {
		t.Error(`no "stopped" log line`)
	}
}

func TestShutdownTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	started := make(chan struct{})
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- server.Run(ctx, zap.New(core), server.Lifecycle{Ready: func() { close(ready) }, Timeout: 100 * time.Millisecond},
			server.Server{Name: "http", Addr: "127.0.0.1:0", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-block
			})})
	}()
	<-ready
	addr := logs.FilterMessage("listening").All()[0].ContextMap()["addr"].(string)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	go func() {
		if resp, err := (&http.Client{Transport: tr}).Get("http://" + addr); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	if err := <-result; err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Errorf("Run with a request outliving the timeout = %v, want a deadline error", err)
	}
}
