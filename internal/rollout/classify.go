package rollout

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// kind is why a request failed. vegeta keeps only an error's message, so the
// classifier decides the kind while the error still has its type.
type kind int

const (
	kindNone kind = iota
	kindConnect
	kindTimeout
	kind5xx
	kind4xx
	kindOther
)

// kindLog remembers the kind of each failed request, by vegeta's sequence
// number, until the aggregator takes it.
type kindLog struct {
	mu    sync.Mutex
	kinds map[uint64]kind
}

func newKindLog() *kindLog { return &kindLog{kinds: map[uint64]kind{}} }

func (l *kindLog) put(seq uint64, k kind) {
	l.mu.Lock()
	l.kinds[seq] = k
	l.mu.Unlock()
}

func (l *kindLog) take(seq uint64) kind {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[seq]
	delete(l.kinds, seq)
	return k
}

// classifier is an http.RoundTripper that records why requests fail. It finds
// the request's sequence number in the X-Vegeta-Seq header vegeta sets.
// It also applies the timeout, to the request and the reading of its body,
// marks requests Close if close is set, and counts new connections.
type classifier struct {
	next    http.RoundTripper
	timeout time.Duration
	log     *kindLog
	close   bool          // a new connection for every request
	opened  atomic.Uint64 // TCP connections made
}

func (c *classifier) RoundTrip(req *http.Request) (*http.Response, error) {
	seq, err := strconv.ParseUint(req.Header.Get("X-Vegeta-Seq"), 10, 64)
	if err != nil { // not one of vegeta's requests
		return c.next.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), c.timeout)
	var gotConn atomic.Bool
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		// Every TCP connection made, including one a request dials but
		// leaves to another that an idle connection served first.
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				c.opened.Add(1)
			}
		},
	}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace)) // a copy, ours to change
	if c.close {
		req.Close = true
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		c.log.put(seq, classify(ctx, err, gotConn.Load()))
		cancel()
		return nil, err
	}
	resp.Body = &classifiedBody{ReadCloser: resp.Body, ctx: ctx, cancel: cancel, seq: seq, log: c.log}
	return resp, nil
}

// classifiedBody records the kind of an error met while reading the body.
type classifiedBody struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelFunc
	seq    uint64
	log    *kindLog
}

func (b *classifiedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.log.put(b.seq, classify(b.ctx, err, true))
	}
	return n, err
}

func (b *classifiedBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// classify tells a timeout (ctx's deadline passed) from a failure to
// connect (no connection was obtained, or dialing failed) from anything else.
func classify(ctx context.Context, err error, gotConn bool) kind {
	var netErr net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout() {
		return kindTimeout
	}
	var opErr *net.OpError
	if !gotConn || errors.As(err, &opErr) && opErr.Op == "dial" {
		return kindConnect
	}
	return kindOther
}
