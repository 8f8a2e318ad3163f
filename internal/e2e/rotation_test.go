package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"example.com/app/internal/testbin"
	"example.com/app/internal/token"
)

// TestHS256: the shared-secret mode, asked for explicitly, still works for
// the course's first steps, and says loudly what it costs.
func TestHS256(t *testing.T) {
	hs := []string{"JWT_SECRET=" + secret, "SHUTDOWN_DRAIN=0s", "SHUTDOWN_TIMEOUT=5s"}
	auth := start(t, "auth", append(hs, "DEMO_USER=true"))
	hello := start(t, "hello", hs)
	tok := login(t, auth.HTTP)
	if a := call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tok)); a.code != http.StatusOK {
		t.Errorf("hello GET /secure with an HS256 token = %d %v, want 200", a.code, a.body)
	}
	for name, p := range map[string]*testbin.Process{"auth": auth, "hello": hello} {
		if len(p.LogEntries("HS256: tokens are signed with a shared secret, so every service holding it can mint tokens; use Ed25519 key files (JWT_PRIVATE_KEY_FILE, JWT_PUBLIC_KEYS_FILE) beyond the course's first steps")) != 1 {
			t.Errorf("%s with JWT_SECRET did not warn about HS256:\n%s", name, p.Logs())
		}
	}
	if a := call(t, http.MethodGet, "http://"+auth.HTTP+"/.well-known/jwks.json", nil); a.code != http.StatusOK || len(a.body["keys"].([]any)) != 0 {
		t.Errorf("auth JWKS with HS256 = %d %v, want 200 with no keys: a secret is never published", a.code, a.body)
	}
}

// TestKeyRotation rotates the signing key of the real binaries through
// files swapped as the kubelet swaps a Secret volume, with no restart:
// auth signs with A and hello accepts {A}; both accept {A, B}; auth signs
// with B; A is retired. A client keeps calling /secure with every token
// it got throughout, and no call fails until A's tokens are retired.
func TestKeyRotation(t *testing.T) {
	a, b := newKey(t), newKey(t)
	authKeys := &testbin.SecretVolume{Dir: t.TempDir()}
	helloKeys := &testbin.SecretVolume{Dir: t.TempDir()}
	authKeys.Write(t, map[string][]byte{"jwt-private.pem": privatePEMOf(t, a), "jwt-public.pem": publicPEMOf(t, a)})
	helloKeys.Write(t, map[string][]byte{"jwt-public.pem": publicPEMOf(t, a)})
	reload := "KEYS_RELOAD_INTERVAL=50ms"
	auth := start(t, "auth", []string{"JWT_PRIVATE_KEY_FILE=" + authKeys.Path("jwt-private.pem"),
		"JWT_PUBLIC_KEYS_FILE=" + authKeys.Path("jwt-public.pem"), "DEMO_USER=true", reload, "SHUTDOWN_DRAIN=0s"})
	hello := start(t, "hello", []string{"JWT_PUBLIC_KEYS_FILE=" + helloKeys.Path("jwt-public.pem"), reload, "SHUTDOWN_DRAIN=0s"})

	// The client: every token it has, over and over, counting failures.
	var (
		mu       sync.Mutex
		tokens   []string
		calls    atomic.Int64
		failures atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			held := append([]string(nil), tokens...)
			mu.Unlock()
			for _, tok := range held {
				req, _ := http.NewRequest(http.MethodGet, "http://"+hello.HTTP+"/secure", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				calls.Add(1)
				if err != nil || resp.StatusCode != http.StatusOK {
					failures.Add(1)
				}
				if err == nil {
					resp.Body.Close()
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	got := func(tok string) {
		mu.Lock()
		tokens = append(tokens, tok)
		mu.Unlock()
	}
	// waitReload waits for p's next "keys reloaded" line, the nth in all.
	waitReload := func(p *testbin.Process, n int, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(p.LogEntries("keys reloaded")) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no reload within 10s:\n%s", what, p.Logs())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	tokA := login(t, auth.HTTP)
	if kid := kidOf(t, tokA); kid != a.ID {
		t.Fatalf("token kid before the rotation = %s, want A %s", kid, a.ID)
	}
	got(tokA)

	// 1. Publish B to every verifier (and to auth's JWKS); A still signs.
	helloKeys.Write(t, map[string][]byte{"jwt-public.pem": publicPEMOf(t, a, b)})
	authKeys.Write(t, map[string][]byte{"jwt-private.pem": privatePEMOf(t, a), "jwt-public.pem": publicPEMOf(t, a, b)})
	waitReload(hello, 1, "publishing B at hello")
	waitReload(auth, 1, "publishing B at auth")
	jwks := call(t, http.MethodGet, "http://"+auth.HTTP+"/.well-known/jwks.json", nil)
	if keys, _ := jwks.body["keys"].([]any); len(keys) != 2 {
		t.Errorf("auth JWKS after publishing B = %v, want A and B", jwks.body)
	}
	got(login(t, auth.HTTP))

	// 2. auth signs with B; A's tokens keep working.
	authKeys.Write(t, map[string][]byte{"jwt-private.pem": privatePEMOf(t, b), "jwt-public.pem": publicPEMOf(t, a, b)})
	waitReload(auth, 2, "switching auth to B")
	tokB := login(t, auth.HTTP)
	if kid := kidOf(t, tokB); kid != b.ID {
		t.Errorf("token kid after the switch = %s, want B %s", kid, b.ID)
	}
	got(tokB)
	time.Sleep(300 * time.Millisecond) // the client uses every token a few times
	close(stop)
	wg.Wait()
	t.Logf("during the rotation: %d calls to /secure with tokens signed by A and B, %d failed", calls.Load(), failures.Load())
	if calls.Load() == 0 || failures.Load() != 0 {
		t.Errorf("during the rotation: %d calls, %d failed; want calls and none failed", calls.Load(), failures.Load())
	}

	// 3. Retire A, after the longest token lifetime in real life.
	helloKeys.Write(t, map[string][]byte{"jwt-public.pem": publicPEMOf(t, b)})
	waitReload(hello, 2, "retiring A at hello")
	if r := call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tokA)); r.code != http.StatusUnauthorized {
		t.Errorf("hello GET /secure with A's token after A was retired = %d, want 401", r.code)
	}
	if r := call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tokB)); r.code != http.StatusOK {
		t.Errorf("hello GET /secure with B's token after A was retired = %d, want 200", r.code)
	}
	metrics := call(t, http.MethodGet, "http://"+hello.Health+"/metrics", nil).body["text"].(string)
	if !strings.Contains(metrics, `token_rejections_total{reason="unknown_key",service="hello"} 1`) {
		t.Errorf("hello /metrics lacks one unknown_key rejection:\n%s", grep(metrics, "token_rejections_total"))
	}
	// A broken key file: logged, the keys stay.
	helloKeys.Write(t, map[string][]byte{"jwt-public.pem": []byte("-----BEGIN NOTHING-----\n")})
	deadline := time.Now().Add(10 * time.Second)
	for len(hello.LogEntries("reloading keys failed; keeping the old ones")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a broken key file was not reported within 10s:\n%s", hello.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := call(t, http.MethodGet, "http://"+hello.HTTP+"/secure", bearer(tokB)); r.code != http.StatusOK {
		t.Errorf("hello GET /secure with B's token after a broken key file = %d, want 200", r.code)
	}
}

func newKey(t *testing.T) token.Key {
	t.Helper()
	k, err := token.GenerateEd25519()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func privatePEMOf(t *testing.T, k token.Key) []byte {
	t.Helper()
	b, err := token.MarshalPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publicPEMOf(t *testing.T, keys ...token.Key) []byte {
	t.Helper()
	b, err := token.MarshalPublicKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kidOf returns the kid in a token's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	header, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func grep(text, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
