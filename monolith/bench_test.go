package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"example.com/app/internal/config"
	"example.com/app/internal/limit"
	"example.com/app/internal/service"
	"example.com/app/internal/service/servicetest"
)

// BenchmarkSecureDuringLoginFlood: the monolith serves /secure and /login
// on the same CPUs. It reports /secure's p99 latency unloaded and while 8
// or 32 clients in this process flood /login with wrong passwords from
// distinct addresses (each one a bcrypt comparison, as an attacker's would
// be, unless the gate answers 429 at once). The goal: loaded p99 ≤ 3×
// unloaded, which the bcrypt gate (all CPUs but one) is for; the gate as it
// was (all CPUs) runs in the same benchmark for comparison. The flooders
// share the CPUs too: 32 of them retrying every 429 at once are an HTTP
// flood, which the edge's per-client limits stop first.
func BenchmarkSecureDuringLoginFlood(b *testing.B) {
	private, _, _ := servicetest.KeyFiles(b)
	cfg, err := config.Parse([]string{"monolith"}, func(k string) string {
		return map[string]string{"JWT_PRIVATE_KEY_FILE": private, "DEMO_USER": "true"}[k]
	}, io.Discard, monolith().Needs)
	if err != nil {
		b.Fatal(err)
	}
	app, err := service.New(monolith(), cfg, zap.NewNop(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(app.API)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/login", nil)
	req.SetBasicAuth("user", "password")
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("POST /login: %v %v", resp, err)
	}
	var body struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}

	secureP99 := func(n int) time.Duration {
		lat := make([]time.Duration, n)
		for i := range lat {
			r, _ := http.NewRequest(http.MethodGet, srv.URL+"/secure", nil)
			r.Header.Set("Authorization", "Bearer "+body.Token)
			start := time.Now()
			resp, err := client.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck // benchmark
			resp.Body.Close()
			lat[i] = time.Since(start)
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("GET /secure = %d", resp.StatusCode)
			}
		}
		slices.Sort(lat)
		return lat[n*99/100]
	}

	gates := []struct {
		name string
		gate *limit.Gate
	}{
		{"gate-all-cpus-but-one", app.Deps.LoginLimits.Hashing},
		{"gate-all-cpus-previous", limit.NewGate(runtime.GOMAXPROCS(0), 64, 2*time.Second)},
	}
	for _, g := range gates {
		for _, clients := range []int{8, 32} {
			b.Run(g.name+"/"+strconv.Itoa(clients)+"-flooders", func(b *testing.B) {
				app.Deps.LoginLimits.Hashing = g.gate // the handler reads it per request
				for b.Loop() {
					flood(b, clients, srv.URL, client, secureP99)
				}
			})
		}
	}
	app.Deps.LoginLimits.Hashing = gates[0].gate
}

// flood measures secureP99 unloaded, then while clients send failing logins
// as fast as they are answered, and reports both.
func flood(b *testing.B, clients int, url string, client *http.Client, secureP99 func(int) time.Duration) {
	{
		secureP99(500) // warm up
		unloaded := secureP99(3000)

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var sent, limited atomic.Int64
		var next atomic.Int64
		for range clients {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					i := next.Add(1)
					r, _ := http.NewRequest(http.MethodPost, url+"/login", nil)
					r.SetBasicAuth("guess"+strconv.FormatInt(i, 10), "wrong")
					r.Header.Set("X-Real-IP", "10."+strconv.FormatInt(i>>16&255, 10)+"."+strconv.FormatInt(i>>8&255, 10)+"."+strconv.FormatInt(i&255, 10))
					resp, err := client.Do(r)
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // benchmark
					resp.Body.Close()
					sent.Add(1)
					if resp.StatusCode == http.StatusTooManyRequests {
						limited.Add(1)
					}
				}
			})
		}
		time.Sleep(500 * time.Millisecond) // the flood is on
		start := time.Now()
		loaded := secureP99(3000)
		floodFor := time.Since(start)
		close(stop)
		wg.Wait()

		b.ReportMetric(float64(unloaded.Microseconds())/1000, "unloaded-p99-ms")
		b.ReportMetric(float64(loaded.Microseconds())/1000, "flood-p99-ms")
		b.ReportMetric(float64(loaded)/float64(unloaded), "flood/unloaded-p99")
		b.ReportMetric(float64(sent.Load()-limited.Load())/floodFor.Seconds(), "logins-checked/s")
		b.ReportMetric(float64(limited.Load())/floodFor.Seconds(), "logins-429/s")
	}
}
