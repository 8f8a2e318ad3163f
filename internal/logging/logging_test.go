package logging_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"example.com/app/internal/logging"
)

func TestJSON(t *testing.T) {
	var buf bytes.Buffer
	logger, flush, err := logging.New(&buf, logging.Options{Level: "info", Format: "json"}, false)
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("hidden")
	logger.Info("shown")
	flush()
	var e struct{ Level, Msg, Time string }
	if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
		t.Fatalf("log output %q is not one JSON line: %v", buf.String(), err)
	}
	if e.Level != "info" || e.Msg != "shown" || e.Time == "" {
		t.Errorf("log line = %+v, want level info, msg shown and a time", e)
	}
}

func TestBufferedFlush(t *testing.T) {
	var buf bytes.Buffer
	logger, flush, err := logging.New(&buf, logging.Options{Level: "info", Format: "console"}, true)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("request")
	if buf.Len() != 0 {
		t.Errorf("buffered logger wrote %q at once, want nothing before a flush", buf.String())
	}
	flush()
	if !strings.Contains(buf.String(), "INFO\trequest") {
		t.Errorf("after flush, output = %q, want the console line", buf.String())
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []logging.Options{{Level: "loud", Format: "json"}, {Level: "info", Format: "xml"}} {
		if _, _, err := logging.New(&bytes.Buffer{}, o, false); err == nil {
			t.Errorf("New(%+v) error = nil, want an error", o)
		}
	}
}
