package limit_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/limit"
)

func TestKeyed(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	k := limit.NewKeyed(3, 10*time.Second, 100)
	k.SetNow(func() time.Time { return now })

	for i := range 3 {
		if w := k.Wait("a"); w != 0 {
			t.Fatalf("Wait(a) after %d failures = %v, want 0", i, w)
		}
		k.Spend("a")
	}
	if w := k.Wait("a"); w != 10*time.Second {
		t.Errorf("Wait(a) after 3 failures, burst 3 = %v, want 10s", w)
	}
	if w := k.Wait("a"); w != 10*time.Second {
		t.Errorf("Wait(a) asked twice = %v, want 10s: looking must not spend a token", w)
	}
	if w := k.Wait("b"); w != 0 {
		t.Errorf("Wait(b) = %v, want 0: keys are independent", w)
	}
	now = now.Add(4 * time.Second)
	if w := k.Wait("a").Round(time.Millisecond); w != 6*time.Second { // rate keeps tokens as float64
		t.Errorf("Wait(a) 4s later = %v, want 6s", w)
	}
	now = now.Add(6 * time.Second)
	if w := k.Wait("a"); w != 0 {
		t.Errorf("Wait(a) 10s later = %v, want 0", w)
	}
}

func TestKeyedBoundedMemory(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	k := limit.NewKeyed(2, time.Minute, 50)
	k.SetNow(func() time.Time { return now })
	for i := range 10_000 {
		k.Spend("client-"+strconv.Itoa(i), "203.0.113.1")
		if n := k.Len(); n > 50 {
			t.Fatalf("after %d keys, Len = %d, want at most 50", i+1, n)
		}
	}
	// Idle keys go first: after a refill, a new key evicts them, not busy ones.
	k2 := limit.NewKeyed(1, time.Second, 2)
	k2.SetNow(func() time.Time { return now })
	k2.Spend("old")
	now = now.Add(time.Hour)
	k2.Spend("busy")
	k2.Spend("new") // full: "old" has refilled and is idle
	if k2.Wait("busy") == 0 {
		t.Errorf("Wait(busy) = 0 after eviction, want its limit kept: only idle keys should have gone")
	}
}

func TestGate(t *testing.T) {
	g := limit.NewGate(1, 1, 50*time.Millisecond)
	leave, ok := g.Enter(context.Background())
	if !ok {
		t.Fatal("Enter on an empty gate = false, want true")
	}
	// Full, one may queue: it waits, then gives up after maxWait.
	start := time.Now()
	if _, ok := g.Enter(context.Background()); ok {
		t.Error("Enter on a full gate = true, want false after the wait")
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("Enter gave up after %v, want it to wait maxWait (50ms) first", waited)
	}
	// A queued caller gets the slot when it is freed.
	got := make(chan bool)
	go func() {
		l, ok := g.Enter(context.Background())
		if ok {
			l()
		}
		got <- ok
	}()
	time.Sleep(5 * time.Millisecond)
	leave()
	if !<-got {
		t.Error("queued Enter = false after the slot was freed, want true")
	}
	// A cancelled caller stops waiting.
	leave, _ = g.Enter(context.Background())
	defer leave()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := g.Enter(ctx); ok {
		t.Error("Enter with a cancelled context on a full gate = true, want false")
	}
}

func TestGateQueueBound(t *testing.T) {
	g := limit.NewGate(1, 0, time.Hour)
	leave, _ := g.Enter(context.Background())
	defer leave()
	start := time.Now()
	if _, ok := g.Enter(context.Background()); ok {
		t.Error("Enter with a full gate and no queue = true, want false")
	}
	if time.Since(start) > time.Second {
		t.Error("Enter with no queue room waited, want an answer at once")
	}
}

// TestKeyedExpiry: a key whose bucket has refilled is forgotten even when
// the set is far from full.
func TestKeyedExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	k := limit.NewKeyed(2, time.Second, 1000)
	k.SetNow(func() time.Time { return now })
	for i := range 100 {
		k.Spend("name-"+strconv.Itoa(i), "net")
	}
	now = now.Add(3 * time.Second) // burst 2 × 1s: every bucket is full again
	k.Spend("late", "net")
	if n := k.Len(); n != 1 {
		t.Errorf("Len after every other key refilled = %d, want 1", n)
	}
}

// TestKeyedParts: the parts of a key are kept apart, and any length hashes
// to the same size.
func TestKeyedParts(t *testing.T) {
	k := limit.NewKeyed(1, time.Hour, 100)
	k.Spend("ab", "c")
	if k.Wait("a", "bc") != 0 {
		t.Error(`Wait("a", "bc") after Spend("ab", "c") > 0, want the keys distinct`)
	}
	if k.Wait("ab", "c") == 0 {
		t.Error(`Wait("ab", "c") after Spend("ab", "c") = 0, want a wait`)
	}
	long := strings.Repeat("x", 1<<20)
	k.Spend(long, "net")
	if k.Wait(long, "net") == 0 {
		t.Error("Wait(1 MiB key) after Spend = 0, want a wait")
	}
}

// BenchmarkKeyedMemory feeds a limiter a million distinct failing names from
// 65,536 addresses, as LoginLimits does (per name and network, and per
// network), and reports the live heap it holds: flat once the sets are full.
func BenchmarkKeyedMemory(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		pairs := limit.NewKeyed(5, 12*time.Second, 10_000)
		networks := limit.NewKeyed(10, 6*time.Second, 10_000)
		var at100k, at500k uint64
		for i := range 1_000_000 {
			network := "198.51." + strconv.Itoa(i>>8&0xff) + "." + strconv.Itoa(i&0xff)
			name := "user-" + strconv.Itoa(i) + strings.Repeat("x", 200)
			pairs.Spend(name, network)
			networks.Spend(network)
			switch i {
			case 100_000:
				at100k = heap(before)
			case 500_000:
				at500k = heap(before)
			}
		}
		b.ReportMetric(float64(at100k)/(1<<20), "MiB-at-100k")
		b.ReportMetric(float64(at500k)/(1<<20), "MiB-at-500k")
		b.ReportMetric(float64(heap(before))/(1<<20), "MiB-at-1M")
		b.ReportMetric(float64(pairs.Len()+networks.Len()), "keys")
		runtime.KeepAlive(pairs)
		runtime.KeepAlive(networks)
	}
}

func heap(before runtime.MemStats) uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if m.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return m.HeapAlloc - before.HeapAlloc
}
