// Package middleware holds the HTTP middleware every service runs, outermost first:
//
//	RequestID  propagate or make up X-Request-ID
//	Identify   add X-App-Version and X-Pod-Name to every answer
//	Observe    one access log line and the HTTP metrics per request
//	Recover    answer 500 for a panic instead of dropping the connection
//	LimitBody  answer 413 for bodies over the limit
//
// and LabelRoutes makes the router's routes note their template for Observe.
package middleware

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"example.com/app/internal/metrics"
	"example.com/app/internal/respond"
)

// Chain returns h wrapped in mw, the first of mw outermost.
func Chain(h http.Handler, mw ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// RequestIDHeader carries a request's ID from the edge through the services.
// It is in canonical form, as net/http keys header maps.
const RequestIDHeader = "X-Request-Id"

// RequestID sets X-Request-ID on the answer: the request's own if it has a
// reasonable one (nginx sends its $request_id), else a new random one.
func RequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header[RequestIDHeader]
		if len(id) != 1 || !validID(id[0]) {
			id = []string{newID()}
		}
		w.Header()[RequestIDHeader] = id
		next.ServeHTTP(w, r)
	})
}

// validID accepts up to 128 visible ASCII characters, which covers UUIDs and
// nginx's hex IDs but not a megabyte of text or control characters.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// newID returns 32 random hex digits, like nginx's $request_id. An ID must
// be unique, not secret, so math/rand/v2's generator (ChaCha8, seeded from
// the OS) does, and it costs no system call.
func newID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// Identify sets X-App-Version and X-Pod-Name on every answer, so that
// `curl -sI` shows which version and pod answered during a rollout.
func Identify(version, pod string) func(http.Handler) http.Handler {
	v, p := []string{version}, []string{pod} // shared, not copied per request: nothing appends to them
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["X-App-Version"] = v
			h["X-Pod-Name"] = p
			next.ServeHTTP(w, r)
		})
	}
}

// Recorder is the ResponseWriter Observe hands down: it notes what was answered.
type Recorder struct {
	http.ResponseWriter
	Status int    // the status sent, or 0 before anything is
	Bytes  int64  // body bytes written
	Route  string // the matched route template, set by Route; empty when none matched
}

// WriteHeader notes the status and sends it.
func (rec *Recorder) WriteHeader(code int) {
	if rec.Status == 0 && code >= 200 { // 1xx answers are not the final status
		rec.Status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

// Write notes the bytes written.
func (rec *Recorder) Write(b []byte) (int, error) {
	if rec.Status == 0 {
		rec.Status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rec *Recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// recorder finds the Recorder behind w, if any.
func recorder(w http.ResponseWriter) *Recorder {
	for {
		switch v := w.(type) {
		case *Recorder:
			return v
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

// Observe logs one line per request to logger and counts it in m. server
// names the listener in the log ("http" or "health").
func Observe(logger *zap.Logger, m *metrics.Metrics, server string) func(http.Handler) http.Handler {
	logger = logger.With(zap.String("server", server))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			m.RequestStarted()
			x := &exchange{Recorder: Recorder{ResponseWriter: w}, req: r}
			defer func() { // deferred: a handler that aborts with a panic is counted too
				x.elapsed = time.Since(start)
				if x.Status == 0 {
					x.Status = http.StatusOK // what net/http sends for a handler that wrote nothing
				}
				m.RequestFinished(x.Route, r.Method, x.Status, x.elapsed)
				if ce := logger.Check(zapcore.InfoLevel, "request"); ce != nil {
					x.line[0] = zap.Inline(x)
					ce.Write(x.line[:]...)
				}
			}()
			next.ServeHTTP(&x.Recorder, r)
		})
	}
}

// exchange is a request and its answer, as Observe logs them: one
// allocation per request holds the recorder and the access line's fields,
// which are added by MarshalLogObject in place of nine zap.Fields (a 600-byte
// slice per request).
type exchange struct {
	Recorder
	req     *http.Request
	elapsed time.Duration
	line    [1]zap.Field // the exchange itself, inlined into the line
}

// MarshalLogObject adds the access line's fields: method, route, path,
// status, bytes, duration, remote, request_id and user_agent. Alerts and
// dashboards read them: rename none.
func (x *exchange) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("method", x.req.Method)
	enc.AddString("route", x.Route)
	enc.AddString("path", x.req.URL.Path)
	enc.AddInt64("status", int64(x.Status))
	enc.AddInt64("bytes", x.Bytes)
	enc.AddDuration("duration", x.elapsed)
	enc.AddString("remote", x.req.RemoteAddr)
	enc.AddString("request_id", first(x.Header()[RequestIDHeader]))
	enc.AddString("user_agent", x.req.UserAgent())
	return nil
}

func first(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

// LabelRoutes makes each of r's routes note its path template for Observe:
// the route label of the metrics and the route of the log line. Call it
// once every route is added; requests that match no route keep an empty
// route. It wraps each route's handler once, here, rather than with
// r.Use, whose middleware mux wraps around the handler anew on every request.
// The inner middlewares run after the route is noted, around the handler:
// an error one of them answers (fault injection) is counted under its route,
// as the handler's own would be.
func LabelRoutes(r *mux.Router, inner ...func(http.Handler) http.Handler) {
	//nolint:errcheck // the walk function returns no error
	r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		h := route.GetHandler()
		tpl, err := route.GetPathTemplate()
		if h == nil || err != nil { // a subrouter's entry (its routes are walked too), or no path
			return nil
		}
		for i := len(inner) - 1; i >= 0; i-- {
			h = inner[i](h)
		}
		route.Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if rec := recorder(w); rec != nil {
				rec.Route = tpl
			}
			h.ServeHTTP(w, req)
		}))
		return nil
	})
}

// Recover answers 500 when a handler panics, logging the panic and its stack
// for the operator; the client sees no stack trace.
func Recover(logger *zap.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(v) // net/http's way to abort a response: let it do its work
				}
				logger.Error("handler panicked",
					zap.String("method", r.Method),
					zap.String("path", r.URL.Path),
					zap.String("panic", fmt.Sprint(v)),
					zap.Stack("stack"))
				if rec := recorder(w); rec == nil || rec.Status == 0 {
					respond.Error(w, http.StatusInternalServerError, "internal error")
					return
				}
				panic(http.ErrAbortHandler) // the status is out: cut the connection so the client sees the failure
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// LimitBody answers 413 to requests whose body is over limit bytes.
func LimitBody(limit int64) func(http.Handler) http.Handler {
	message := fmt.Sprintf("request body too large: the limit is %d bytes", limit)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				respond.Error(w, http.StatusRequestEntityTooLarge, message)
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, limit) // a chunked body of unknown length
			}
			next.ServeHTTP(w, r)
		})
	}
}
