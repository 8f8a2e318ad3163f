// Package limit protects the login endpoint: per-key rate limits on failed
// attempts, with bounded memory, and a bound on concurrent password checks.
package limit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token-bucket limiters, one per key (a client address, a
// user name), holding at most a fixed number of keys.
//
// Only failures spend tokens (Fail); Wait tells how long a key must wait
// before it may try again. When the set is full, idle keys are forgotten
// first; if every key is busy, an arbitrary one is forgotten, which at worst
// gives that key a fresh budget: memory stays bounded under a flood of new
// keys, and the concurrency bound on password checks still holds.
type Keyed struct {
	every   rate.Limit
	burst   int
	maxKeys int
	now     func() time.Time

	mu   sync.Mutex
	keys map[string]*rate.Limiter
}

// NewKeyed returns limiters that allow burst failures per key, refilled at one
// per interval, for at most maxKeys keys.
func NewKeyed(burst int, interval time.Duration, maxKeys int) *Keyed {
	return &Keyed{
		every:   rate.Every(interval),
		burst:   burst,
		maxKeys: maxKeys,
		now:     time.Now,
		keys:    make(map[string]*rate.Limiter),
	}
}

// Wait returns how long key must wait before its next attempt: 0 if it may
// try now.
func (k *Keyed) Wait(key string) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.keys[key]
	if !ok {
		return 0
	}
	now := k.now()
	r := l.ReserveN(now, 1)
	defer r.CancelAt(now) // only looking: give the token back
	return r.DelayFrom(now)
}

// Fail spends one of key's tokens.
func (k *Keyed) Fail(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.keys[key]
	if !ok {
		if len(k.keys) >= k.maxKeys {
			k.evict()
		}
		l = rate.NewLimiter(k.every, k.burst)
		k.keys[key] = l
	}
	l.AllowN(k.now(), 1)
}

// Len returns the number of keys held.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// evict forgets keys whose bucket has refilled, or one arbitrary key if none
// has. Call with k.mu held.
func (k *Keyed) evict() {
	now := k.now()
	for key, l := range k.keys {
		if l.TokensAt(now) >= float64(k.burst) {
			delete(k.keys, key)
		}
	}
	if len(k.keys) < k.maxKeys {
		return
	}
	for key := range k.keys { // map order is random: any key
		delete(k.keys, key)
		return
	}
}

// Gate bounds how many callers run at once, with a bounded queue and wait.
type Gate struct {
	slots   chan struct{}
	queue   chan struct{}
	maxWait time.Duration
}

// NewGate returns a Gate letting n callers run at once and queued callers
// wait up to maxWait; at most queue callers wait.
func NewGate(n, queue int, maxWait time.Duration) *Gate {
	return &Gate{slots: make(chan struct{}, n), queue: make(chan struct{}, queue), maxWait: maxWait}
}

// Enter waits for a slot and returns the function that frees it, or false if
// the queue is full, the wait is too long or ctx ends first.
func (g *Gate) Enter(ctx context.Context) (leave func(), ok bool) {
	select {
	case g.slots <- struct{}{}:
		return g.leave, true
	default:
	}
	select {
	case g.queue <- struct{}{}:
		defer func() { <-g.queue }()
	default:
		return nil, false
	}
	t := time.NewTimer(g.maxWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return g.leave, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

func (g *Gate) leave() { <-g.slots }
