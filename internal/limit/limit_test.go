package limit_test

import (
	"context"
	"strconv"
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
		k.Fail("a")
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
		k.Fail("client-" + strconv.Itoa(i))
		if n := k.Len(); n > 50 {
			t.Fatalf("after %d keys, Len = %d, want at most 50", i+1, n)
		}
	}
	// Idle keys go first: after a refill, a new key evicts them, not busy ones.
	k2 := limit.NewKeyed(1, time.Second, 2)
	k2.SetNow(func() time.Time { return now })
	k2.Fail("old")
	now = now.Add(time.Hour)
	k2.Fail("busy")
	k2.Fail("new") // full: "old" has refilled and is idle
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
