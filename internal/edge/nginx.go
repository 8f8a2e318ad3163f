package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotFound is returned by Find when there is no nginx to run.
var ErrNotFound = errors.New("nginx not found: install it with `apt-get install nginx` (Debian/Ubuntu) or `brew install nginx`, or name one with NGINX_BIN=/path/to/nginx")

// Find returns the path of the nginx binary: the one the environment
// variable NGINX_BIN names (a path, or a name looked up on PATH), else the one on
// PATH, else one in the usual places (Debian puts it in /usr/sbin, often not
// on a user's PATH).
func Find(getenv func(string) string) (string, error) {
	if name := getenv("NGINX_BIN"); name != "" {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("edge: NGINX_BIN=%s: %w", name, err)
		}
		return path, nil
	}
	if path, err := exec.LookPath("nginx"); err == nil {
		return path, nil
	}
	for _, path := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx", "/opt/homebrew/bin/nginx"} {
		if fi, err := os.Stat(path); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", ErrNotFound
}

// NginxVersion returns the version of the nginx binary, from `nginx -v`
// ("nginx version: nginx/1.22.1").
func NginxVersion(ctx context.Context, binary string) (Version, error) {
	out, err := exec.CommandContext(ctx, binary, "-v").CombinedOutput()
	if err != nil {
		return Version{}, fmt.Errorf("edge: %s -v: %w: %s", binary, err, out)
	}
	_, after, ok := strings.Cut(string(out), "nginx/")
	if !ok {
		return Version{}, fmt.Errorf("edge: %s -v printed %q, want \"nginx version: nginx/1.2.3\"", binary, out)
	}
	v, err := ParseVersion(after)
	if err != nil {
		return Version{}, fmt.Errorf("edge: %s -v: %w", binary, err)
	}
	return v, nil
}

// Nginx is nginx run with one config included in its http block, as the
// official image includes conf.d/*.conf, in a prefix directory of its own.
type Nginx struct {
	Binary string    // the nginx binary; see Find
	Dir    string    // prefix directory, which must exist: nginx.conf, conf.d/, temp/ and nginx.pid go here
	Site   string    // the http-level config: a template from nginx/, rendered
	Stdout io.Writer // the access log: the configs log to /dev/stdout; nil discards it
	Stderr io.Writer // the error log; nil discards it
}

// mainConf is the image's nginx.conf with every path under the prefix, in
// the foreground. One process (master_process off): nginx answers signals
// itself, and as root it has no workers running as another user, which could
// not reach a private temporary directory.
const mainConf = `# Written by example.com/app/internal/edge.
daemon off;
master_process off;
worker_processes 1;
pid "{{dir}}/nginx.pid";
error_log stderr warn;

events {
    worker_connections 1024;
}

http {
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 65;
    access_log off;
    client_body_temp_path "{{dir}}/temp/client_body";
    proxy_temp_path "{{dir}}/temp/proxy";
    fastcgi_temp_path "{{dir}}/temp/fastcgi";
    uwsgi_temp_path "{{dir}}/temp/uwsgi";
    scgi_temp_path "{{dir}}/temp/scgi";
    include "{{dir}}/conf.d/*.conf";
}
`

// ConfPath returns the path of the main config, for nginx -c.
func (n *Nginx) ConfPath() string { return filepath.Join(n.Dir, "nginx.conf") }

// write writes nginx.conf and conf.d/site.conf into Dir.
func (n *Nginx) write() error {
	dir, err := filepath.Abs(n.Dir)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "temp"), 0o755); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := os.WriteFile(n.ConfPath(), []byte(strings.ReplaceAll(mainConf, "{{dir}}", dir)), 0o644); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "site.conf"), []byte(n.Site), 0o644); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	return nil
}

func (n *Nginx) command(ctx context.Context, extra ...string) *exec.Cmd {
	// -e stderr: the error log until nginx.conf is read, instead of the
	// compiled-in /var/log/nginx/error.log, which a user cannot open.
	args := append([]string{"-e", "stderr", "-p", n.Dir, "-c", n.ConfPath()}, extra...)
	cmd := exec.CommandContext(ctx, n.Binary, args...)
	// nginx takes NGINX from its environment as listening sockets inherited
	// from an old binary (a binary upgrade), and fails on any other value.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "NGINX=") })
	return cmd
}

// Test writes the config and checks it with nginx -t. It fails if nginx
// rejects the config or prints any warning, and returns nginx's output.
func (n *Nginx) Test(ctx context.Context) (string, error) {
	if err := n.write(); err != nil {
		return "", err
	}
	out, err := n.command(ctx, "-t").CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("edge: nginx -t: %w: %s", err, out)
	}
	for _, level := range []string{"[warn]", "[error]", "[crit]", "[alert]", "[emerg]"} {
		if bytes.Contains(out, []byte(level)) {
			return string(out), fmt.Errorf("edge: nginx -t printed a warning: %s", out)
		}
	}
	return string(out), nil
}

// Process is a running nginx.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when nginx has exited
	err  error         // why it exited; read after done
}

// Start writes the config, starts nginx and waits until it accepts
// connections on every address in ready, at most 10 s. ctx bounds the start
// only; stop nginx with Stop. If nginx exits first, the error holds the
// start of its error log.
func (n *Nginx) Start(ctx context.Context, ready ...string) (*Process, error) {
	if err := n.write(); err != nil {
		return nil, err
	}
	errLog := &headWriter{max: 4 << 10}
	cmd := n.command(context.Background())
	cmd.Stdout = n.Stdout
	cmd.Stderr = io.MultiWriter(errLog, orDiscard(n.Stderr))
	cmd.SysProcAttr = ChildProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("edge: starting nginx: %w", err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, addr := range ready {
		for {
			conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err == nil {
				conn.Close() // only probing
				break
			}
			select {
			case <-p.done:
				return nil, fmt.Errorf("edge: nginx exited before listening on %s: %v: %s", addr, p.err, errLog)
			case <-ctx.Done():
				p.Stop(time.Second) //nolint:errcheck // the timeout is the error to report
				return nil, fmt.Errorf("edge: nginx not listening on %s: %w: %s", addr, ctx.Err(), errLog)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return p, nil
}

// Done is closed when nginx has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop asks nginx to finish the requests in flight and exit (SIGQUIT), and
// kills it if it has not exited within timeout. It returns nil if nginx
// exited of its own accord, then or before.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("edge: stopping nginx: %w", err)
	}
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(timeout):
		p.cmd.Process.Kill() //nolint:errcheck // it may have exited meanwhile; Wait tells
		<-p.done
		return fmt.Errorf("edge: nginx did not stop within %v: killed", timeout)
	}
}

func (p *Process) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("edge: nginx: %w", p.err)
	}
	return nil
}

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (w *headWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.b))
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
