package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/token"
)

// start runs the baseline with args on a free port and returns its URL.
func start(t *testing.T, args ...string) string {
	t.Helper()
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), append([]string{"baseline", "-http=127.0.0.1:0"}, args...), w)
		w.Close()
	}()
	t.Cleanup(func() {
		r.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run(%q) = %v, want nil after the context ends", args, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("run(%q) did not return after the context ended", args)
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var entry struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "listening" {
				lines <- entry.Addr
			}
		}
	}()
	select {
	case addr := <-lines:
		return "http://" + addr
	case err := <-done:
		t.Fatalf("run(%q) = %v before listening", args, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("run(%q) did not log listening within 10s", args)
	}
	return ""
}

func get(t *testing.T, url, authorization string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: decoding the body: %v", url, err)
	}
	return resp.StatusCode, body
}

func TestPlain(t *testing.T) {
	url := start(t, "-kind=plain")
	for _, path := range []string{"/", "/secure"} {
		if code, body := get(t, url+path, ""); code != http.StatusOK || body["message"] != "Hello" {
			t.Errorf("GET %s = %d %v, want 200 with message Hello", path, code, body)
		}
	}
}

// TestJWT: the jwt baseline accepts a token the services issue, and refuses
// what hello refuses: no token, a tampered one, an expired one, another key's.
func TestJWT(t *testing.T) {
	dir := t.TempDir()
	files, key, err := token.WriteKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := token.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	opts := token.Options{Issuer: "auth.service", Audience: "app", TTL: time.Hour}
	issue := func(k token.Key, o token.Options) string {
		t.Helper()
		i, err := token.NewIssuer(k, o)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := i.Issue("user", "user@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := issue(key, opts)
	expiredOpts := opts
	expiredOpts.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	parts := strings.Split(good, ".")

	url := start(t, "-kind=jwt", "-public-key="+files.Public)
	if code, body := get(t, url+"/secure", "Bearer "+good); code != http.StatusOK || body["user"] != "user" {
		t.Errorf("GET /secure with a valid token = %d %v, want 200 for user", code, body)
	}
	for _, tt := range []struct{ name, authorization string }{
		{"no token", ""},
		{"no Bearer", good},
		{"tampered", "Bearer " + parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))},
		{"expired", "Bearer " + issue(key, expiredOpts)},
		{"another key", "Bearer " + issue(other, opts)},
	} {
		if code, _ := get(t, url+"/secure", tt.authorization); code != http.StatusUnauthorized {
			t.Errorf("GET /secure with %s = %d, want 401", tt.name, code)
		}
	}
}

func TestRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"baseline"},
		{"baseline", "-kind=other"},
		{"baseline", "-kind=jwt"},
		{"baseline", "-kind=jwt", "-public-key=/nonexistent"},
	} {
		if err := run(t.Context(), args, io.Discard); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}
