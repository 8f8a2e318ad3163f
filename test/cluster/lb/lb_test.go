package lb_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"example.com/app/test/cluster/lb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fast is a profile with the shape of the real ones and short times. The
// tests wait for states, never for durations, so a slow machine only makes
// them slower.
var fast = lb.Profile{
	Name: "test", Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond,
	UnhealthyThreshold: 3, HealthyThreshold: 2, FailOpen: true,
}

// fakeNode is a node as the load balancer sees it: a health server in
// place of kube-proxy's healthCheckNodePort, and a TCP server in place of
// the nodePort that says its name on each connection, then echoes.
type fakeNode struct {
	name   string
	health *httptest.Server
	ln     net.Listener

	mu       sync.Mutex
	status   int // the health answer; 0 hangs until the checker gives up
	answered map[int]int
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

func startNode(t *testing.T, name string) *fakeNode {
	t.Helper()
	n := &fakeNode{name: name, status: http.StatusOK, answered: map[int]int{}, conns: map[net.Conn]bool{}}
	n.health = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		status := n.status
		n.answered[status]++
		n.mu.Unlock()
		if r.URL.Path != lb.HealthPath {
			t.Errorf("health check of %s: path %q, want %q", name, r.URL.Path, lb.HealthPath)
		}
		if status == 0 {
			<-r.Context().Done() // hang: the checker's timeout ends it
			return
		}
		w.WriteHeader(status)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.ln = ln
	n.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by cleanup
			}
			n.mu.Lock()
			n.conns[c] = true
			n.mu.Unlock()
			n.wg.Go(func() {
				defer c.Close()
				if _, err := c.Write([]byte(name + "\n")); err != nil {
					return
				}
				buf := make([]byte, 512)
				for {
					k, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:k]); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		n.mu.Lock()
		for c := range n.conns {
			c.Close()
		}
		n.mu.Unlock()
		n.wg.Wait()
		n.health.Close()
	})
	return n
}

// set changes the health answer and clears the count of answers.
func (n *fakeNode) set(status int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status = status
	n.answered = map[int]int{}
}

// count is how many health checks got status since the last set.
func (n *fakeNode) count(status int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.answered[status]
}

func (n *fakeNode) node() lb.Node {
	return lb.Node{Addr: n.ln.Addr().String(), HealthAddr: n.health.Listener.Addr().String()}
}

// startLB runs a load balancer in front of nodes until the test ends.
func startLB(t *testing.T, p lb.Profile, nodes ...*fakeNode) *lb.Balancer {
	t.Helper()
	cfg := lb.Config{Listen: "127.0.0.1:0", Profile: p}
	for _, n := range nodes {
		cfg.Nodes = append(cfg.Nodes, n.node())
	}
	b, err := lb.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("lb.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// waitHealth waits until the load balancer thinks of each node as want says.
func waitHealth(t *testing.T, b *lb.Balancer, want ...bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := b.Status()
		same := len(st) == len(want)
		for i := range st {
			same = same && st[i].Healthy == want[i]
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node health = %+v, want healthy %v", st, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connect opens a connection through the load balancer and returns it with
// the name of the node that answered.
func connect(t *testing.T, b *lb.Balancer) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatalf("dialing the load balancer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the node's name through the load balancer: %v", err)
	}
	return c, r, strings.TrimSpace(name)
}

// spread opens k connections one after another and counts them by node.
func spread(t *testing.T, b *lb.Balancer, k int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range k {
		c, _, name := connect(t, b)
		got[name]++
		c.Close()
	}
	return got
}

func TestSteersAwayFromAnUnhealthyNodeAndBack(t *testing.T) {
	a, c := startNode(t, "a"), startNode(t, "c")
	b := startLB(t, fast, a, c)
	waitHealth(t, b, true, true)
	if got := spread(t, b, 4); got["a"] != 2 || got["c"] != 2 {
		t.Errorf("4 connections with both nodes healthy went %v, want 2 to each", got)
	}

	a.set(http.StatusServiceUnavailable) // kube-proxy: no ready local endpoint
	waitHealth(t, b, false, true)
	if n := a.count(http.StatusServiceUnavailable); n < fast.UnhealthyThreshold {
		t.Errorf("node a turned unhealthy after %d failed checks, want at least %d", n, fast.UnhealthyThreshold)
	}
	if got := spread(t, b, 6); got["c"] != 6 {
		t.Errorf("6 connections with node a unhealthy went %v, want all 6 to c", got)
	}

	a.set(http.StatusOK)
	waitHealth(t, b, true, true)
	if n := a.count(http.StatusOK); n < fast.HealthyThreshold {
		t.Errorf("node a turned healthy after %d passed checks, want at least %d", n, fast.HealthyThreshold)
	}
	if got := spread(t, b, 4); got["a"] != 2 || got["c"] != 2 {
		t.Errorf("4 connections with both nodes healthy again went %v, want 2 to each", got)
	}
	st := b.Status()
	if st[0].Connections != 4 || st[1].Connections != 10 {
		t.Errorf("Status() connections = %d and %d, want 4 and 10", st[0].Connections, st[1].Connections)
	}
}

func TestNodesStartUnhealthy(t *testing.T) {
	a := startNode(t, "a")
	hanging := startNode(t, "hanging")
	hanging.set(0)
	b := startLB(t, fast, a, hanging)
	waitHealth(t, b, true, false)
	if n := a.count(http.StatusOK); n < fast.HealthyThreshold {
		t.Errorf("node a took traffic after %d passed checks, want at least %d", n, fast.HealthyThreshold)
	}
	if got := spread(t, b, 3); got["a"] != 3 {
		t.Errorf("3 connections went %v, want all to a, the only node that ever passed", got)
	}
}

func TestTimeoutIsAFailure(t *testing.T) {
	a, c := startNode(t, "a"), startNode(t, "c")
	b := startLB(t, fast, a, c)
	waitHealth(t, b, true, true)
	a.set(0) // answers nothing: a node whose kube-proxy hangs
	waitHealth(t, b, false, true)
	if n := a.count(0); n < fast.UnhealthyThreshold {
		t.Errorf("node a turned unhealthy after %d checks timed out, want at least %d", n, fast.UnhealthyThreshold)
	}
	if got := spread(t, b, 3); got["c"] != 3 {
		t.Errorf("3 connections went %v, want all to c", got)
	}
}

func TestFailOpenWhenNoNodeIsHealthy(t *testing.T) {
	a, c := startNode(t, "a"), startNode(t, "c")
	b := startLB(t, fast, a, c)
	waitHealth(t, b, true, true)
	a.set(http.StatusServiceUnavailable)
	c.set(http.StatusServiceUnavailable)
	waitHealth(t, b, false, false)
	if got := spread(t, b, 4); got["a"] != 2 || got["c"] != 2 {
		t.Errorf("4 connections with no healthy node went %v, want 2 to each (fail open)", got)
	}
}

func TestFailClosedWhenNoNodeIsHealthy(t *testing.T) {
	p := fast
	p.FailOpen = false // the Classic ELB's profile
	a := startNode(t, "a")
	b := startLB(t, p, a)
	waitHealth(t, b, true)
	a.set(http.StatusServiceUnavailable)
	waitHealth(t, b, false)
	wantReset(t, b, "a connection with no healthy node")
	if st := b.Status(); st[0].Connections != 0 {
		t.Errorf("Status() connections = %d, want 0", st[0].Connections)
	}
}

// toNode opens connections until one lands on node name.
func toNode(t *testing.T, b *lb.Balancer, name string) (net.Conn, *bufio.Reader) {
	t.Helper()
	for range 4 {
		c, r, got := connect(t, b)
		if got == name {
			return c, r
		}
		c.Close()
	}
	t.Fatalf("4 connections, none to node %s", name)
	return nil, nil
}

func echo(c net.Conn, r *bufio.Reader) (string, error) {
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestOpenConnectionsSurviveAnUnhealthyNode(t *testing.T) {
	a, c := startNode(t, "a"), startNode(t, "c")
	b := startLB(t, fast, a, c) // GKE: connections persist
	waitHealth(t, b, true, true)
	conn, r := toNode(t, b, "a")
	a.set(http.StatusServiceUnavailable)
	waitHealth(t, b, false, true)
	if got, err := echo(conn, r); got != "ping\n" || err != nil {
		t.Errorf("echo on a connection to the now unhealthy node = %q, %v; want \"ping\\n\"", got, err)
	}
}

func TestOpenConnectionsResetOnAnUnhealthyNode(t *testing.T) {
	p := fast
	p.ResetOnUnhealthy = true // AWS
	a, c := startNode(t, "a"), startNode(t, "c")
	b := startLB(t, p, a, c)
	waitHealth(t, b, true, true)
	toA, rA := toNode(t, b, "a")
	toC, rC := toNode(t, b, "c")
	a.set(http.StatusServiceUnavailable)
	waitHealth(t, b, false, true)
	if got, err := echo(toA, rA); err == nil {
		t.Errorf("echo on a connection to the now unhealthy node = %q, nil; want an error (reset)", got)
	}
	if got, err := echo(toC, rC); got != "ping\n" || err != nil {
		t.Errorf("echo on a connection to the healthy node = %q, %v; want \"ping\\n\"", got, err)
	}
}

func TestNodeRefusingConnectionsResetsTheClient(t *testing.T) {
	a := startNode(t, "a")
	b := startLB(t, fast, a)
	waitHealth(t, b, true)
	a.ln.Close() // the health check still passes: the nodePort does not
	wantReset(t, b, "a connection to a refusing node")
}

// wantReset connects through the load balancer and expects a TCP reset
// before any byte.
func wantReset(t *testing.T, b *lb.Balancer, what string) {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr())
	var n int
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		n, err = c.Read(make([]byte, 1))
	}
	// The reset can come so soon that the dial already reports it.
	if n > 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: read %d bytes, error %v; want a reset", what, n, err)
	}
}

func TestBadConfig(t *testing.T) {
	good := lb.Node{Addr: "10.0.0.1:30080", HealthAddr: "10.0.0.1:30256"}
	tests := []struct {
		name string
		cfg  lb.Config
		want string
	}{
		{"no nodes", lb.Config{Listen: "127.0.0.1:0", Profile: fast}, "no nodes"},
		{"bad listen", lb.Config{Listen: "127.0.0.1", Nodes: []lb.Node{good}, Profile: fast}, `listen address "127.0.0.1"`},
		{"node without port", lb.Config{Listen: ":0", Nodes: []lb.Node{{Addr: "10.0.0.1", HealthAddr: good.HealthAddr}}, Profile: fast}, `address "10.0.0.1"`},
		{"health port 0", lb.Config{Listen: ":0", Nodes: []lb.Node{{Addr: good.Addr, HealthAddr: "10.0.0.1:0"}}, Profile: fast}, "port in 1-65535"},
		{"node twice", lb.Config{Listen: ":0", Nodes: []lb.Node{good, good}, Profile: fast}, "listed twice"},
		{"zero profile", lb.Config{Listen: ":0", Nodes: []lb.Node{good}}, "interval 0s: must be positive"},
		{"timeout over interval", lb.Config{Listen: ":0", Nodes: []lb.Node{good},
			Profile: lb.Profile{Interval: time.Second, Timeout: 2 * time.Second, UnhealthyThreshold: 1, HealthyThreshold: 1}}, "must not exceed the interval"},
		{"threshold 0", lb.Config{Listen: ":0", Nodes: []lb.Node{good},
			Profile: lb.Profile{Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1}}, "unhealthy threshold 0"},
	}
	for _, tt := range tests {
		b, err := lb.New(tt.cfg, zaptest.NewLogger(t))
		if err == nil {
			t.Errorf("%s: New(%+v) error = nil, want one saying %q", tt.name, tt.cfg, tt.want)
			b.Serve(canceled()) // closes the listener
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New error = %q, want it to say %q", tt.name, err, tt.want)
		}
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := lb.Config{Listen: ln.Addr().String(), Nodes: []lb.Node{{Addr: "127.0.0.1:1", HealthAddr: "127.0.0.1:1"}}, Profile: fast}
	if _, err := lb.New(cfg, zaptest.NewLogger(t)); err == nil {
		t.Errorf("New on a port in use: error = nil, want one")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestProfiles(t *testing.T) {
	// How long each provider takes to steer away from a node whose pod
	// stopped being ready: what the overlays' preStop sleeps are sized by.
	want := map[string]time.Duration{
		"gke": 24 * time.Second, "gke-rbs": 6 * time.Second,
		"aws-elb": 60 * time.Second, "aws-nlb": 20 * time.Second,
	}
	for _, name := range lb.ProfileNames() {
		p, err := lb.LookupProfile(name)
		if err != nil {
			t.Fatalf("LookupProfile(%q): %v", name, err)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("profile %s: %v", name, err)
		}
		if got := p.SteerAway(); got != want[name] {
			t.Errorf("profile %s: SteerAway() = %s, want %s", name, got, want[name])
		}
		delete(want, name)
	}
	if len(want) > 0 {
		t.Errorf("profiles missing: %v", want)
	}
	if _, err := lb.LookupProfile("azure"); err == nil || !strings.Contains(err.Error(), "gke, gke-rbs, aws-elb, aws-nlb") {
		t.Errorf("LookupProfile(\"azure\") error = %v, want one listing the profiles", err)
	}
}
