// Package limit protects the login endpoint: per-key rate limits on login
// attempts, with bounded memory, and a bound on concurrent password checks.
package limit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keySize is the size of the hashed keys held, in bytes: 128 bits keep
// collisions out of reach, whatever the attacker sends.
const keySize = 16

// Keyed is a set of token-bucket limiters, one per key (a client network, a
// user name and client network), holding at most a fixed number of keys.
//
// Keys are held as a keyed hash (HMAC-SHA256 with a random key made per
// process, truncated to 128 bits): fixed-size, whatever their length, and
// not the names and addresses themselves. Spend spends a token; Wait tells
// how long a key must wait before it may try again. A key whose bucket has
// refilled is forgotten: it would start afresh anyway. When the set is full,
// refilled keys go first; if every key is busy, arbitrary ones go, which at
// worst gives those keys a fresh budget: memory stays bounded under a flood
// of new keys, and the concurrency bound on password checks still holds.
type Keyed struct {
	every   rate.Limit
	refill  time.Duration // how long an empty bucket takes to refill
	burst   int
	maxKeys int
	now     func() time.Time

	mu        sync.Mutex
	mac       hash.Hash
	keys      map[[keySize]byte]*rate.Limiter
	lastSweep time.Time
}

// NewKeyed returns limiters that allow burst attempts per key, refilled at
// one per interval, for at most maxKeys keys.
func NewKeyed(burst int, interval time.Duration, maxKeys int) *Keyed {
	secret := make([]byte, 32)
	rand.Read(secret) //nolint:errcheck // crypto/rand.Read never fails (Go 1.24+)
	return &Keyed{
		every:   rate.Every(interval),
		refill:  time.Duration(burst) * interval,
		burst:   burst,
		maxKeys: maxKeys,
		now:     time.Now,
		mac:     hmac.New(sha256.New, secret),
		keys:    make(map[[keySize]byte]*rate.Limiter),
	}
}

// id returns the hashed key for parts. Call with k.mu held.
func (k *Keyed) id(parts []string) [keySize]byte {
	k.mac.Reset()
	var n [8]byte
	for _, p := range parts { // length-prefixed: ("ab","c") is not ("a","bc")
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		k.mac.Write(n[:])
		k.mac.Write([]byte(p))
	}
	var id [keySize]byte
	copy(id[:], k.mac.Sum(nil))
	return id
}

// Wait returns how long the key made of parts must wait before its next
// attempt: 0 if it may try now.
func (k *Keyed) Wait(parts ...string) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, ok := k.keys[k.id(parts)]
	if !ok {
		return 0
	}
	now := k.now()
	r := l.ReserveN(now, 1)
	defer r.CancelAt(now) // only looking: give the token back
	return r.DelayFrom(now)
}

// Spend spends one of the tokens of the key made of parts.
func (k *Keyed) Spend(parts ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if now.Sub(k.lastSweep) >= k.refill {
		k.sweep(now) // entries expire even when the set is not full
	}
	id := k.id(parts)
	l, ok := k.keys[id]
	if !ok {
		if len(k.keys) >= k.maxKeys {
			k.evict(now)
		}
		l = rate.NewLimiter(k.every, k.burst)
		k.keys[id] = l
	}
	l.AllowN(now, 1)
}

// Len returns the number of keys held.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// sweep forgets keys whose bucket has refilled. Call with k.mu held.
func (k *Keyed) sweep(now time.Time) {
	for id, l := range k.keys {
		if l.TokensAt(now) >= float64(k.burst) {
			delete(k.keys, id)
		}
	}
	k.lastSweep = now
}

// evict makes room: it sweeps, and if that freed too little, forgets
// arbitrary keys until an eighth of the set is free, so that a flood of new
// keys costs one pass per maxKeys/8 keys, not one per key. Call with k.mu held.
func (k *Keyed) evict(now time.Time) {
	k.sweep(now)
	target := k.maxKeys - max(k.maxKeys/8, 1)
	kept := make(map[[keySize]byte]*rate.Limiter, k.maxKeys)
	for id, l := range k.keys { // map order is random: arbitrary keys go
		if len(kept) == target {
			break
		}
		kept[id] = l
	}
	k.keys = kept // a fresh map: deleting leaves a map's memory as large as it ever was
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
