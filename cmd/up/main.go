// Command up runs the split stack on this machine, as `make up` does: it
// builds auth and hello, runs them on loopback ports with a fresh Ed25519
// key pair (auth signs with the private key, hello holds only the public
// one; both files live in a temporary directory for the run), and puts nginx with nginx/frontend.conf.template in front of
// them on https://localhost:8443, with certificates from tls/ (made if
// missing); the UI in frontend/ is at https://localhost:8443/ui/. It prints
// what to try, and on Ctrl-C stops nginx, then the services, and leaves no
// process or port behind.
//
//	up [-edge-port 8443] [-http-port 8080] [-tls tls]
//
// EDGE_PORT and EDGE_HTTP_PORT set the ports' defaults. nginx must be
// installed: `apt-get install nginx` or `brew install nginx`; NGINX_BIN
// names another binary. Any version works: the template's http2 form is
// chosen from `nginx -v`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"example.com/app/internal/certs"
	"example.com/app/internal/edge"
	"example.com/app/internal/token"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "up: %v\n", err)
		os.Exit(1)
	}
}

// run is main with the process's globals passed in, so tests can call it.
// It runs the stack until ctx is cancelled or a process exits.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	defaultEdgePort, err := envPort(getenv, "EDGE_PORT", 8443)
	if err != nil {
		return err
	}
	defaultHTTPPort, err := envPort(getenv, "EDGE_HTTP_PORT", 8080)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	edgePort := fs.Int("edge-port", defaultEdgePort, "nginx's HTTPS `port` on localhost (env EDGE_PORT)")
	httpPort := fs.Int("http-port", defaultHTTPPort, "nginx's `port` redirecting plain HTTP to HTTPS (env EDGE_HTTP_PORT)")
	tlsDir := fs.String("tls", "tls", "`directory` with ca.pem, cert.pem and key.pem; made by certgen if missing")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	certDir, err := filepath.Abs(*tlsDir)
	if err != nil {
		return err
	}
	nginx, err := edge.Find(getenv)
	if err != nil {
		return fmt.Errorf("%w, then run this again", err)
	}
	version, err := edge.NginxVersion(ctx, nginx)
	if err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "nginx", "frontend.conf.template"))
	if err != nil {
		return err
	}
	if err := ensureCerts(*tlsDir, stdout); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "app-up-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Fprintln(stdout, "building auth and hello")
	for _, name := range []string{"auth", "hello"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, name), "./"+name)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %w", name, err)
		}
	}

	// A key pair for this run only, in its temporary directory: auth signs
	// with the private key and lets the demo user log in; hello, which only
	// verifies, gets the public key alone, as in Kubernetes.
	keys, _, err := token.WriteKeyPair(tmp)
	if err != nil {
		return err
	}
	common := []string{"SHUTDOWN_DRAIN=0s", "SHUTDOWN_TIMEOUT=5s", "LOG_FORMAT=json"}
	env := map[string][]string{
		"auth":  append([]string{"JWT_PRIVATE_KEY_FILE=" + keys.Private, "DEMO_USER=true"}, common...),
		"hello": append([]string{"JWT_PUBLIC_KEYS_FILE=" + keys.Public}, common...),
	}
	var services []*service
	defer func() { // after nginx has stopped: see the defer below
		for _, s := range services {
			s.stop(10 * time.Second)
		}
	}()
	for _, name := range []string{"auth", "hello"} {
		s, err := startService(ctx, name, filepath.Join(tmp, name), env[name], stderr)
		if err != nil {
			return err
		}
		services = append(services, s)
	}

	conf, err := edge.Params{
		HTTPSListen:  "127.0.0.1:" + strconv.Itoa(*edgePort),
		HTTPListen:   "127.0.0.1:" + strconv.Itoa(*httpPort),
		TLSDir:       certDir,
		HTTP2:        edge.HTTP2For(version),
		RedirectPort: *edgePort,
		UIDir:        filepath.Join(root, "frontend"),
		DrainFile:    filepath.Join(tmp, "draining"), // never made: make up stops at once
		Auth:         []string{services[0].http},
		Hello:        []string{services[1].http},
	}.Render(string(tmpl))
	if err != nil {
		return err
	}
	n := &edge.Nginx{Binary: nginx, Dir: tmp, Site: conf, Stdout: stdout, Stderr: stderr}
	if _, err := n.Test(ctx); err != nil {
		return err
	}
	proc, err := n.Start(ctx, "127.0.0.1:"+strconv.Itoa(*edgePort), "127.0.0.1:"+strconv.Itoa(*httpPort))
	if err != nil {
		return err
	}
	defer proc.Stop(10 * time.Second) //nolint:errcheck // stopping on the way out; a failure shows in its log

	url := "https://localhost:" + strconv.Itoa(*edgePort)
	ca := filepath.Join(*tlsDir, certs.CAFile)
	fmt.Fprintf(stdout, `
The split stack is up: %[1]s (nginx %[8]s)
  the UI: %[1]s/ui/ (a browser warns about the certificate unless it trusts %[2]s)
  auth  on http://%[3]s (ops http://%[4]s)
  hello on http://%[5]s (ops http://%[6]s)
  http://localhost:%[7]d redirects to HTTPS
Try:
  curl --cacert %[2]s %[1]s/
  curl --cacert %[2]s %[1]s/login -u user:password
  TOKEN=$(curl -s --cacert %[2]s %[1]s/login -u user:password | sed 's/.*"token":"\([^"]*\)".*/\1/')
  curl --cacert %[2]s -H "Authorization: Bearer $TOKEN" %[1]s/secure
  curl --cacert %[2]s -i %[1]s/version
  curl -i http://localhost:%[7]d/
Ctrl-C stops everything. nginx's access log follows.

`, url, ca, services[0].http, services[0].health, services[1].http, services[1].health, *httpPort, version)

	var exited string
	select {
	case <-ctx.Done():
	case <-proc.Done():
		exited = "nginx"
	case <-services[0].done:
		exited = "auth"
	case <-services[1].done:
		exited = "hello"
	}
	if exited != "" {
		// Where children share the terminal's process group (not on
		// Linux), Ctrl-C reaches them too, and one may exit first.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			return fmt.Errorf("%s exited; see its log above", exited)
		}
	}
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// ensureCerts writes certificates into dir unless it has cert.pem and key.pem.
func ensureCerts(dir string, stdout io.Writer) error {
	_, errCert := os.Stat(filepath.Join(dir, certs.CertFile))
	_, errKey := os.Stat(filepath.Join(dir, certs.KeyFile))
	if errCert == nil && errKey == nil {
		return nil
	}
	b, err := certs.Generate(nil, time.Now())
	if err != nil {
		return err
	}
	if err := b.WriteDir(dir, false); err != nil {
		return fmt.Errorf("%w: make certs FORCE=1 replaces the files in %s, or delete them", err, dir)
	}
	fmt.Fprintf(stdout, "wrote a CA and a certificate for localhost into %s\n", dir)
	return nil
}

// service is a running auth or hello.
type service struct {
	cmd          *exec.Cmd
	http, health string        // the listeners' host:port
	done         chan struct{} // closed when it has exited
}

// startService runs bin on free loopback ports with only env as its
// environment, copies its log to w with its name in front, and waits until
// both of its servers listen.
func startService(ctx context.Context, name, bin string, env []string, w io.Writer) (*service, error) {
	s := &service{cmd: exec.Command(bin, "-http=127.0.0.1:0", "-health=127.0.0.1:0"), done: make(chan struct{})}
	s.cmd.Env = env
	s.cmd.SysProcAttr = edge.ChildProcAttr()
	logs, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	listening := make(chan struct{})
	var copied sync.WaitGroup
	copied.Go(func() {
		var once sync.Once
		sc := bufio.NewScanner(logs)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(w, "%-5s | %s\n", name, sc.Bytes())
			var entry struct{ Msg, Server, Addr string }
			if json.Unmarshal(sc.Bytes(), &entry) != nil || entry.Msg != "listening" {
				continue
			}
			switch entry.Server {
			case "http":
				s.http = entry.Addr
			case "health":
				s.health = entry.Addr
			}
			if s.http != "" && s.health != "" {
				once.Do(func() { close(listening) })
			}
		}
	})
	go func() {
		copied.Wait() // Wait closes the pipe: read it all first
		s.cmd.Wait()  //nolint:errcheck // the exit is reported by done; the log says why
		close(s.done)
	}()
	select {
	case <-listening:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited before listening; see its log above", name)
	case <-ctx.Done():
		s.stop(time.Second)
		return nil, ctx.Err()
	case <-time.After(15 * time.Second):
		s.stop(time.Second)
		return nil, fmt.Errorf("%s did not listen within 15s", name)
	}
}

// stop sends SIGTERM and waits up to timeout before killing.
func (s *service) stop(timeout time.Duration) {
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.cmd.Process.Kill() //nolint:errcheck // as above
		<-s.done
	}
}

// moduleRoot returns the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod here or above: run up from the repository")
		}
		dir = parent
	}
}

// envPort returns the port number in the environment variable key, or def
// if it is not set.
func envPort(getenv func(string) string, key string, def int) (int, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	port, err := strconv.Atoi(v)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("%s is %q, want a port number", key, v)
	}
	return port, nil
}
