package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"example.com/app/internal/testbin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBadFlags(t *testing.T) {
	t.Parallel()
	ok := []string{"-listen", "127.0.0.1:0", "-profile", "gke", "-backend", "10.0.0.1:30443,30256"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "127.0.0.1:0", "-backend", "10.0.0.1:30443,30256"}, "-profile is required"},
		{append(ok, "-profile", "azure"), `unknown profile "azure"`},
		{[]string{"-listen", "127.0.0.1:0", "-profile", "gke"}, "no nodes"},
		{append(ok[:4:4], "-backend", "10.0.0.1:30443"), "want NODE_IP:NODEPORT,HEALTHCHECKNODEPORT"},
		{append(ok[:4:4], "-backend", "10.0.0.1,30256"), "want NODE_IP:NODEPORT,HEALTHCHECKNODEPORT"},
		{append(ok[:4:4], "-backend", "10.0.0.1:30443,health"), "is no port number"},
		{append(ok[:4:4], "-backend", "10.0.0.1:30443,0"), "port in 1-65535"},
		{ok[2:], `listen address ""`},
		{append(ok, "-interval", "500ms"), "timeout 1s: must not exceed the interval 500ms"},
		{append(ok, "-timeout", "0s"), "timeout 0s: must be positive"},
		{append(ok, "-unhealthy-threshold", "0"), "unhealthy threshold 0"},
		{append(ok, "-healthy-threshold", "-1"), "healthy threshold -1"},
		{append(ok, "-fail-open=maybe"), "invalid boolean"},
		{append(ok, "extra"), "unexpected arguments"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		err := run(t.Context(), append([]string{"cloudlb"}, tt.args...), &stderr)
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run(%q) error = %v, want a usage error (exit status 2) saying %q", tt.args, err, tt.want)
		}
	}
}

// TestExitStatus runs the built command: bad flags exit 2 with the reason
// on stderr.
func TestExitStatus(t *testing.T) {
	t.Parallel()
	bins, err := testbin.Build(t.TempDir(), "", "test/cluster/lb/cmd/cloudlb")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins["cloudlb"], "-listen", "127.0.0.1:0", "-profile", "aws-nlb", "-backend", "10.0.0.1:30443,30256", "-timeout", "11s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("cloudlb with -timeout over the interval: %v, want exit status 2", err)
	}
	want := `cloudlb: profile "aws-nlb": timeout 11s: must not exceed the interval 10s`
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("cloudlb stderr = %q, want it to say %q", &stderr, want)
	}
	if filepath.Base(bins["cloudlb"]) != "cloudlb" {
		t.Errorf("built %q, want a binary named cloudlb", bins["cloudlb"])
	}
}

// lines is a concurrency-safe log sink that hands each JSON line to a
// channel.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan map[string]any
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadBytes('\n')
		if err != nil {
			l.buf.Write(line) // an unfinished line: keep it
			return len(p), nil
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			select {
			case l.ch <- m:
			default: // the test stopped reading
			}
		}
	}
}

// waitLog returns the first line with message msg.
func waitLog(t *testing.T, l *lines, msg string) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-l.ch:
			if m["msg"] == msg {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q log line within 10s", msg)
		}
	}
}

func TestServesWithTheProfileOverridden(t *testing.T) {
	t.Parallel()
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer health.Close()
	node, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := node.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "node\n") //nolint:errcheck // the test's read reports it
	}()
	_, hcPort, _ := net.SplitHostPort(health.Listener.Addr().String())

	// The GKE profile checks every 8 s: the flags make it fast.
	ctx, cancel := context.WithCancel(context.Background())
	log := &lines{ch: make(chan map[string]any, 100)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"cloudlb", "-listen", "127.0.0.1:0", "-profile", "gke",
			"-backend", node.Addr().String() + "," + hcPort,
			"-interval", "50ms", "-timeout", "50ms", "-healthy-threshold", "2", "-fail-open=false"}, log)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	listening := waitLog(t, log, "listening")
	if listening["interval"] != 0.05 || listening["healthyThreshold"] != 2.0 ||
		listening["unhealthyThreshold"] != 3.0 || listening["failOpen"] != false {
		t.Errorf("listening line %v: want interval 0.05, healthyThreshold 2, the profile's unhealthyThreshold 3, failOpen false", listening)
	}
	healthy := waitLog(t, log, "node healthy: sending it new connections")
	if ts, _ := healthy["time"].(string); !timestamp(ts) {
		t.Errorf("node healthy line %v: want an RFC 3339 time", healthy)
	}
	addr, _ := listening["addr"].(string)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); got != "node\n" || err != nil {
		t.Errorf("through cloudlb read %q, %v; want \"node\\n\"", got, err)
	}
	<-served
}

func timestamp(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}
