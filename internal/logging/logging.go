// Package logging builds the services' zap loggers.
package logging

import (
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Options say how a service logs.
type Options struct {
	Level  string // debug, info, warn or error
	Format string // json or console
}

// New returns a logger writing lines to w, and a function that flushes it.
//
// A buffered logger collects lines and writes them every second, so that an
// access log line costs its request no system call. Use it for high-volume
// lines only: the others should reach the operator at once.
func New(w io.Writer, opts Options, buffered bool) (*zap.Logger, func(), error) {
	lvl, err := zapcore.ParseLevel(opts.Level)
	if err != nil {
		return nil, nil, fmt.Errorf("logging: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	enc.EncodeDuration = zapcore.SecondsDurationEncoder
	var encoder zapcore.Encoder
	switch opts.Format {
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, nil, fmt.Errorf("logging: unknown format %q, want json or console", opts.Format)
	}
	ws := zapcore.Lock(zapcore.AddSync(w))
	flush := func() {
		_ = ws.Sync() // stderr cannot be synced (uber-go/zap#880); nothing to report
	}
	if buffered {
		b := &zapcore.BufferedWriteSyncer{WS: ws, FlushInterval: time.Second}
		ws = b
		flush = func() {
			_ = b.Stop() // as above: a write error at exit has nowhere to go
		}
	}
	return zap.New(zapcore.NewCore(encoder, ws, lvl), zap.ErrorOutput(ws)), flush, nil
}
