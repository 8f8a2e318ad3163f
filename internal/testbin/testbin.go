// Package testbin builds the module's binaries and runs them as real
// processes for end-to-end tests: on free loopback ports, with their logs
// captured, stopped when the test ends.
package testbin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles example.com/app's commands named by pkgs (such as "auth"
// for ./auth) into dir with the given -ldflags, and returns their paths by name.
// It is meant for TestMain, so it returns an error rather than taking a T.
func Build(dir, ldflags string, pkgs ...string) (map[string]string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	return BuildFrom(root, dir, ldflags, pkgs...)
}

// BuildFrom is Build from the module in root, such as another checkout of
// this one, to compare its binaries with these.
func BuildFrom(root, dir, ldflags string, pkgs ...string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	paths := make(map[string]string, len(pkgs))
	for _, p := range pkgs {
		out := filepath.Join(dir, filepath.Base(p))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./"+p)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", p, err, b)
		}
		paths[filepath.Base(p)] = out
	}
	return paths, nil
}

// ModuleRoot returns the directory of the example.com/app module: the
// working directory's module, or the one a nested test module (such as
// kubernetes/check) replaces it with.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "example.com/app").Output()
	if err != nil {
		return "", fmt.Errorf("finding the example.com/app module: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("finding the example.com/app module: go list named no directory")
	}
	return dir, nil
}

// Process is a running binary.
type Process struct {
	HTTP, Health string // the listeners' host:port
	Started      time.Time

	cmd  *exec.Cmd
	logs SyncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit error, once done is closed
}

// Start runs bin with only the environment env (nothing is inherited, so the
// test says everything the process sees) and -http and -health on free
// loopback ports, then args. It waits until both servers log "listening".
// The process is killed when the test ends, if still running.
func Start(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-http=127.0.0.1:0", "-health=127.0.0.1:0"}, args...)...)
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	addrs := make(chan [2]string, 1)
	go p.readLogs(stderr, addrs)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill() //nolint:errcheck // it may have exited already
		<-p.done
		if t.Failed() {
			t.Logf("%s logs:\n%s", filepath.Base(bin), p.Logs())
		}
	})
	select {
	case a := <-addrs:
		p.HTTP, p.Health = a[0], a[1]
	case <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", bin, p.err, p.Logs())
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not log its listening addresses within 15s:\n%s", bin, p.Logs())
	}
	return p
}

// readLogs copies the process's stderr into p.logs and sends the two
// listening addresses once both are logged.
func (p *Process) readLogs(r io.Reader, addrs chan<- [2]string) {
	var got [2]string
	sent := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		p.logs.Write(append(line, '\n')) //nolint:errcheck // a bytes.Buffer write cannot fail
		var entry struct{ Msg, Server, Addr string }
		if sent || json.Unmarshal(line, &entry) != nil || entry.Msg != "listening" {
			continue
		}
		switch entry.Server {
		case "http":
			got[0] = entry.Addr
		case "health":
			got[1] = entry.Addr
		}
		if got[0] != "" && got[1] != "" {
			addrs <- got
			sent = true
		}
	}
}

// WaitReady polls /readiness until it answers 200 and returns how long the
// process took from start to ready.
func (p *Process) WaitReady(t testing.TB) time.Duration {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.Health + "/readiness")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.Started)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 15s (last: %v %v)\n%s", resp, err, p.Logs())
		}
		select {
		case <-p.done:
			t.Fatalf("exited while waiting to be ready: %v\n%s", p.err, p.Logs())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v: %v", sig, err)
	}
}

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("still running after %v:\n%s", timeout, p.Logs())
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("waiting: %v", p.err)
	}
	return 0
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Logs returns everything the process wrote to stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// LogEntries returns the JSON log lines whose msg is msg, decoded.
func (p *Process) LogEntries(msg string) []map[string]any {
	var entries []map[string]any
	for line := range strings.Lines(p.Logs()) {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == msg {
			entries = append(entries, e)
		}
	}
	return entries
}

// Run runs bin to completion with env and args and returns its exit code and
// stderr, for commands that should fail at once.
func Run(t testing.TB, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	case err != nil:
		t.Fatalf("running %s: %v", bin, err)
	}
	return 0, stderr.String()
}

// SyncBuffer is a bytes.Buffer that a writer and readers may use at once,
// for a process's output.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
