// Package lb is a TEST DOUBLE of a cloud provider's layer-4 (passthrough)
// load balancer in front of a Kubernetes Service of type LoadBalancer with
// externalTrafficPolicy: Local. No cloud load balancer runs on the test
// cluster; this stands in for one so that a drain, a rolling restart or a
// config change of the frontend goes through the same decisions a real one
// makes, with the same timings.
//
// What it copies, as GKE and AWS document and implement it:
//
//   - The targets are the nodes (host:nodePort), not the pods. Each node's
//     healthCheckNodePort is checked with HTTP GET /healthz; only a 200
//     within the timeout passes. kube-proxy answers there 200 while the node
//     has a ready local endpoint of the Service and kube-proxy itself is
//     healthy, and 503 otherwise, on any path (kubernetes
//     pkg/proxy/healthcheck/service_health.go, hcHandler; the count is
//     LocalReadyEndpoints). A terminating pod is not ready, so its node
//     fails the check while kube-proxy still forwards to the pod as long as
//     it is serving (KEP-1669): the load balancer steers away while the pod
//     drains.
//   - Consecutive results and thresholds: a healthy node turns unhealthy
//     after UnhealthyThreshold failures in a row, an unhealthy one healthy
//     after HealthyThreshold successes in a row. A node starts unhealthy and
//     takes traffic once it has passed HealthyThreshold checks, as a newly
//     registered AWS target does.
//   - Each new TCP connection goes to a node that is healthy now (round
//     robin here; the clouds hash the 5-tuple, which spreads connections the
//     same way). A connection stays on its node for its whole life.
//   - No healthy node: GKE and AWS NLB "fail open" and spread new
//     connections over every node as a last resort (GKE's external
//     passthrough NLB: cloud.google.com/load-balancing/docs/network/
//     ext-netlb-traffic-distribution; target pools: the targetPools API's
//     failoverRatio, "force" mode; AWS NLB: docs.aws.amazon.com/
//     elasticloadbalancing/latest/network/target-group-health-checks.html).
//     The Classic ELB documents no fail open (its HTTP listeners answer 503
//     without a healthy instance), so its profile refuses new connections
//     then.
//   - Open connections when a node turns unhealthy: GKE keeps them
//     (connectionPersistenceOnUnhealthyBackends, default
//     DEFAULT_FOR_PROTOCOL: TCP connections persist). The AWS NLB resets
//     them (target group attribute
//     target_health_state.unhealthy.connection_termination.enabled, default
//     true), and a Classic ELB closes them unless connection draining is on:
//     off by default for an ELB made through the API, and the in-tree
//     controller sets it only from the Service's
//     aws-load-balancer-connection-draining-enabled annotation (ELB docs,
//     "Configure connection draining"; cloud-provider-aws).
//
// The profiles' figures and where they come from (interval, timeout,
// unhealthy and healthy thresholds):
//
//	gke      GKE target pool NLB, no annotation      8 s  1 s  3  1
//	         cloud-provider-gcp providers/gce: gceHcCheckIntervalSeconds,
//	         gceHcTimeoutSeconds, gceHcUnhealthyThreshold, gceHcHealthyThreshold
//	gke-rbs  GKE backend service NLB (l4-rbs: the    3 s  1 s  2  1
//	         gke overlay's); ingress-gce pkg/healthchecksl4:
//	         gceLocalHcCheckIntervalSeconds, gceLocalHcUnhealthyThreshold
//	aws-elb  in-tree Classic ELB                    10 s  5 s  6  2
//	         cloud-provider-aws: defaultElbHCInterval, defaultElbHCTimeout,
//	         defaultElbHCUnhealthyThreshold, defaultElbHCHealthyThreshold
//	aws-nlb  AWS Load Balancer Controller NLB,      10 s  6 s  2  2
//	         instance targets (the eks overlay's, whose annotations pin
//	         the controller's defaults for instance mode with Local)
//
// What it does not model:
//
//   - Client address. A passthrough load balancer delivers the client's
//     packets unchanged, so the node (and, with Local, the pod) sees the
//     client's address. This is a user-space proxy: the node sees the
//     proxy's address. The test cluster lives with that because its load
//     comes from one client on the host anyway, so per-client limits (auth's
//     login limit, nginx's limit_req) count one client either way; what it
//     cannot show is the real client's address in X-Real-IP.
//   - A client's connection is accepted before a node is dialled: a node that
//     refuses shows as a reset after connect, not as "connection refused".
//   - Connection draining and deregistration delay (a node leaving the
//     target list), the NLB's unhealthy draining interval, cross-zone
//     balancing and zones at all, several health checkers probing each node
//     (GKE sends probes from several systems), proxy protocol, UDP, and
//     nodes joining or leaving: the node list is fixed at start.
package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// HealthPath is the path the clouds check on the healthCheckNodePort.
const HealthPath = "/healthz"

// dialTimeout bounds connecting to a node. A client of a passthrough load
// balancer waits for the node's SYN-ACK itself, with its own timeout; here
// the proxy waits for it, and resets the client's connection if none comes.
const dialTimeout = 5 * time.Second

// Node is one backend: a Kubernetes node as the load balancer targets it.
type Node struct {
	Addr       string // host:nodePort, where connections go
	HealthAddr string // host:healthCheckNodePort, where GET /healthz goes
}

// Config is what New needs.
type Config struct {
	Listen  string // the frontend address, host:port
	Nodes   []Node
	Profile Profile
}

// Validate says what is wrong with c, if anything.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	}
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes"))
	}
	seen := map[string]bool{}
	for _, n := range c.Nodes {
		for _, a := range []string{n.Addr, n.HealthAddr} {
			if err := checkHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("node %q: %w", n.Addr, err))
			}
		}
		if seen[n.Addr] {
			errs = append(errs, fmt.Errorf("node %q: listed twice", n.Addr))
		}
		seen[n.Addr] = true
	}
	if err := c.Profile.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with a non-empty host and a port in 1-65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("address %q: want host:port with a port in 1-65535", addr)
	}
	return nil
}

// NodeStatus is what the load balancer thinks of one node now.
type NodeStatus struct {
	Addr        string
	Healthy     bool
	Connections int // new connections sent to it so far
}

// Balancer is the load balancer. Make one with New, then call Serve.
type Balancer struct {
	profile Profile
	ln      net.Listener
	logger  *zap.Logger
	client  *http.Client

	mu    sync.Mutex
	nodes []*nodeState
	next  int // round robin
	conns map[*link]struct{}

	wg sync.WaitGroup // every goroutine Serve started
}

type nodeState struct {
	Node
	healthy     bool
	successes   int // in a row
	failures    int // in a row
	connections int
}

// link is one client connection and its node's.
type link struct {
	node           int
	client, server net.Conn
}

// New checks cfg and listens on its frontend address, so that a port in use
// is an error here. Serve must be called: it closes the listener.
func New(cfg Config, logger *zap.Logger) (*Balancer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	b := &Balancer{
		profile: cfg.Profile,
		ln:      ln,
		logger:  logger,
		// A new connection for every check, as a prober's would be: a node
		// that stops accepting fails at once. No Proxy: HTTP_PROXY must not
		// apply to the nodes.
		client: &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a redirect is not a 200
			},
		},
		conns: map[*link]struct{}{},
	}
	for _, n := range cfg.Nodes {
		b.nodes = append(b.nodes, &nodeState{Node: n})
	}
	return b, nil
}

// Addr is the frontend address, with the port the system chose for port 0.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// Status returns what the load balancer thinks of each node now, in the
// order of Config.Nodes.
func (b *Balancer) Status() []NodeStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]NodeStatus, len(b.nodes))
	for i, n := range b.nodes {
		out[i] = NodeStatus{Addr: n.Addr, Healthy: n.healthy, Connections: n.connections}
	}
	return out
}

// Serve checks the nodes and forwards connections until ctx is done. Then
// it stops accepting, closes every open connection and returns once every
// goroutine it started has ended.
func (b *Balancer) Serve(ctx context.Context) error {
	p := b.profile
	b.logger.Info("listening", zap.String("server", "lb"), zap.String("addr", b.Addr()),
		zap.String("profile", p.Name), zap.Duration("interval", p.Interval), zap.Duration("timeout", p.Timeout),
		zap.Int("unhealthyThreshold", p.UnhealthyThreshold), zap.Int("healthyThreshold", p.HealthyThreshold),
		zap.Bool("failOpen", p.FailOpen), zap.Bool("resetOnUnhealthy", p.ResetOnUnhealthy))
	if p.FailOpen {
		b.logger.Info("every node starts unhealthy: until one passes its checks, new connections go to every node (fail open)")
	} else {
		b.logger.Info("every node starts unhealthy: until one passes its checks, new connections are refused")
	}
	for i := range b.nodes {
		b.wg.Go(func() { b.watch(ctx, i) })
	}
	stop := context.AfterFunc(ctx, func() {
		b.ln.Close() //nolint:errcheck // the accept loop ends on it; nothing else to do
	})
	defer stop()
	b.accept(ctx)
	b.mu.Lock()
	for l := range b.conns {
		l.close(false)
	}
	b.mu.Unlock()
	b.wg.Wait()
	b.client.CloseIdleConnections()
	b.logger.Info("stopped", zap.String("server", "lb"))
	return nil
}

// accept forwards each new connection until the listener is closed.
func (b *Balancer) accept(ctx context.Context) {
	var backoff time.Duration
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: wait and try again, as
			// net/http's Server does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.logger.Error("accepting", zap.Error(err), zap.Duration("retryIn", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		b.wg.Go(func() { b.forward(ctx, c) })
	}
}

// pick chooses the node for a new connection, or returns -1 to refuse it.
func (b *Balancer) pick() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var candidates []int
	for i, n := range b.nodes {
		if n.healthy {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		if !b.profile.FailOpen {
			return -1
		}
		for i := range b.nodes {
			candidates = append(candidates, i)
		}
	}
	i := candidates[b.next%len(candidates)]
	b.next++
	b.nodes[i].connections++
	return i
}

// forward carries one client connection to a node and back.
func (b *Balancer) forward(ctx context.Context, client net.Conn) {
	i := b.pick()
	if i < 0 {
		b.logger.Warn("refused: no healthy node", zap.String("client", client.RemoteAddr().String()))
		reset(client)
		return
	}
	addr := b.nodes[i].Addr
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		b.logger.Warn("connecting to node", zap.String("node", addr), zap.Error(err))
		reset(client)
		return
	}
	l := &link{node: i, client: client, server: server}
	b.mu.Lock()
	if ctx.Err() != nil { // Serve is closing every link: this one too
		b.mu.Unlock()
		l.close(false)
		return
	}
	b.conns[l] = struct{}{}
	b.mu.Unlock()

	done := make(chan struct{})
	go func() {
		copyHalf(server, client)
		close(done)
	}()
	copyHalf(client, server)
	<-done
	b.mu.Lock()
	delete(b.conns, l)
	b.mu.Unlock()
	l.close(false)
}

// copyHalf copies one direction until src ends, then passes the end on.
func copyHalf(dst, src net.Conn) {
	_, _ = io.Copy(dst, src) // an error ends this direction, as EOF does; the other side sees it
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // fails only if dst is gone already
	}
}

// close closes both ends of l; with rst the client gets a TCP reset.
func (l *link) close(rst bool) {
	if rst {
		reset(l.client)
	} else {
		l.client.Close() //nolint:errcheck // closing is all there is to do
	}
	l.server.Close() //nolint:errcheck // as above
}

// reset closes c with a TCP RST instead of a FIN, as a load balancer that
// drops a connection does.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // then Close sends RST; if it fails, a FIN is fine
	}
	c.Close() //nolint:errcheck // closing is all there is to do
}

// watch checks node i every interval, the first time at once, until ctx is
// done.
func (b *Balancer) watch(ctx context.Context, i int) {
	t := time.NewTicker(b.profile.Interval)
	defer t.Stop()
	for {
		ok, result := b.check(ctx, b.nodes[i].HealthAddr)
		if ctx.Err() != nil {
			return // a check cut short by shutdown says nothing about the node
		}
		b.record(i, ok, result)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check sends one health check; result says what came back.
func (b *Balancer) check(ctx context.Context, addr string) (ok bool, result string) {
	ctx, cancel := context.WithTimeout(ctx, b.profile.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+HealthPath, nil)
	if err != nil {
		return false, err.Error() // Validate has checked addr: not expected
	}
	resp, err := b.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return false, "no answer within " + b.profile.Timeout.String()
		}
		return false, err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // only the status counts
	resp.Body.Close()                                             //nolint:errcheck // read-only body
	return resp.StatusCode == http.StatusOK, resp.Status
}

// record counts one check result of node i and acts on a change of state.
func (b *Balancer) record(i int, ok bool, result string) {
	p := b.profile
	b.mu.Lock()
	n := b.nodes[i]
	var turned, counting bool
	var inRow, threshold int
	if ok {
		n.failures, n.successes = 0, n.successes+1
		inRow, threshold, counting = n.successes, p.HealthyThreshold, !n.healthy
		turned = !n.healthy && n.successes >= p.HealthyThreshold
	} else {
		n.successes, n.failures = 0, n.failures+1
		inRow, threshold, counting = n.failures, p.UnhealthyThreshold, n.healthy
		turned = n.healthy && n.failures >= p.UnhealthyThreshold
	}
	var dropped []*link
	if turned {
		n.healthy = ok
		if !ok && p.ResetOnUnhealthy {
			for l := range b.conns {
				if l.node == i {
					dropped = append(dropped, l)
					delete(b.conns, l)
				}
			}
		}
	}
	healthy := 0
	for _, m := range b.nodes {
		if m.healthy {
			healthy++
		}
	}
	b.mu.Unlock()

	fields := []zap.Field{zap.String("node", n.Addr), zap.String("result", result),
		zap.Int("inRow", inRow), zap.Int("threshold", threshold)}
	switch {
	case turned && ok:
		b.logger.Info("node healthy: sending it new connections", append(fields, zap.Int("healthyNodes", healthy))...)
	case turned:
		b.logger.Info("node unhealthy: no new connections to it", append(fields,
			zap.Int("healthyNodes", healthy), zap.Int("connectionsReset", len(dropped)))...)
	case counting:
		b.logger.Info("check differs from the node's state", fields...)
	}
	if turned && healthy == 0 {
		if p.FailOpen {
			b.logger.Warn("no healthy node: sending new connections to every node (fail open)")
		} else {
			b.logger.Warn("no healthy node: refusing new connections")
		}
	}
	for _, l := range dropped {
		l.close(true)
	}
}
