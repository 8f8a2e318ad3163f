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

	"example.com/app/internal/config"
	"example.com/app/internal/service"
	"example.com/app/internal/token"
)

// KeyFiles writes a new Ed25519 key pair under tb.TempDir(): the private key
// (PKCS#8 PEM) and a public key set holding its public key (PEM). It returns
// their paths and the key.
func KeyFiles(tb testing.TB) (private, public string, key token.Key) {
	tb.Helper()
	f, key, err := token.WriteKeyPair(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return f.Private, f.Public, key
}

// Running is a service started by Start.
type Running struct {
	HTTP, Health string // base URLs: http://127.0.0.1:port
}

// Start runs s with env until the test ends, and waits until it is ready.
// Unless env names keys (JWT_SECRET, even empty, or the key files), s gets
// a new Ed25519 key pair's files: the private key only if it logs users in.
// Unless env sets USERS_FILE, a service that logs users in gets DEMO_USER=true.
func Start(t *testing.T, s service.Service, env map[string]string, args ...string) Running {
	t.Helper()
	vars := map[string]string{"SHUTDOWN_DRAIN": "0s"}
	_, secret := env["JWT_SECRET"]
	_, private := env["JWT_PRIVATE_KEY_FILE"]
	_, public := env["JWT_PUBLIC_KEYS_FILE"]
	if !secret && !private && !public {
		priv, pub, _ := KeyFiles(t)
		vars["JWT_PUBLIC_KEYS_FILE"] = pub
		if s.Needs&config.Login != 0 {
			vars["JWT_PRIVATE_KEY_FILE"] = priv
		}
	}
	if _, users := env["USERS_FILE"]; !users && s.Needs&config.Login != 0 {
		vars["DEMO_USER"] = "true"
	}
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
