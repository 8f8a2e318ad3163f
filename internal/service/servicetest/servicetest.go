// Package servicetest runs a service in the test's process, on free loopback
// ports, for the binaries' in-process tests.
package servicetest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/service"
)

// Secret is the signing key Start gives services.
const Secret = "servicetest-key-0123456789abcdef0123"

// Running is a service started by Start.
type Running struct {
	HTTP, Health string // base URLs: http://127.0.0.1:port
}

// Start runs s with env (JWT_SECRET is set unless env sets it) until the test
// ends, and waits until it is ready.
func Start(t *testing.T, s service.Service, env map[string]string, args ...string) Running {
	t.Helper()
	vars := map[string]string{"JWT_SECRET": Secret, "SHUTDOWN_DRAIN": "0s"}
	for k, v := range env {
		vars[k] = v
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- service.Run(ctx, s, append([]string{s.Name, "-http=127.0.0.1:0", "-health=127.0.0.1:0"}, args...),
			func(k string) string { return vars[k] }, pw)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service.Run(%s) = %v, want nil after cancel", s.Name, err)
		}
	})

	// The "listening" lines give the ports.
	addrs := make(chan Running, 1)
	go func() {
		var r Running
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var e struct{ Msg, Server, Addr string }
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.Msg != "listening" {
				continue
			}
			if e.Server == "http" {
				r.HTTP = "http://" + e.Addr
			} else {
				r.Health = "http://" + e.Addr
			}
			if r.HTTP != "" && r.Health != "" {
				addrs <- r
			}
		}
		io.Copy(io.Discard, pr) //nolint:errcheck // draining the pipe so logging never blocks
	}()
	select {
	case r := <-addrs:
		waitReady(t, r.Health)
		return r
	case err := <-done:
		t.Fatalf("service.Run(%s) = %v before listening", s.Name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("service %s not listening within 10s", s.Name)
	}
	panic("unreachable")
}

func waitReady(t *testing.T, health string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(health + "/readiness")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s/readiness not 200 within 10s", health)
}

// Route is a request and the status it must get.
type Route struct {
	Method, Path string
	Want         int
}

// CheckRoutes sends each request to base and checks its status. Requests to
// /login carry the demo user's credentials.
func CheckRoutes(t *testing.T, base string, routes []Route) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for _, r := range routes {
		req, err := http.NewRequest(r.Method, base+r.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(r.Path, "/login") {
			req.SetBasicAuth("user", "password")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Method, r.Path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.Want {
			t.Errorf("%s %s = %d, want %d", r.Method, r.Path, resp.StatusCode, r.Want)
		}
	}
}
