package containers_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// service stands in for a Kubernetes Service with kube-proxy in front of the
// hello containers: a TCP proxy on a loopback port that sends each new
// connection to the next ready endpoint, round-robin. An endpoint is ready
// while its /readiness answers 200, polled every 100 ms, as the endpoints
// controller follows readiness probes. Connections already open stay with
// their endpoint, as conntrack keeps them: that is what the services' drain
// and graceful shutdown are for.
//
// nginx's upstream is then one address, as in Kubernetes. (Pointing nginx
// at each container's published port instead fails: once a container has
// exited, connections to its port are dropped, not refused, until podman
// has removed the port forwarding, and nginx waits out its connect timeout.)
type service struct {
	ln     net.Listener
	client *http.Client

	mu        sync.Mutex
	endpoints []*endpoint
	next      int
	conns     map[net.Conn]bool // open connections, both sides, closed when the test ends
}

type endpoint struct {
	c     *container
	ready bool
}

// newService starts a service with no endpoints; it stops when the test ends.
func newService(t *testing.T) *service {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{ln: ln, client: &http.Client{Timeout: 500 * time.Millisecond}, conns: map[net.Conn]bool{}}
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() { s.accept(); done <- struct{}{} }()
	go func() { s.poll(stop); done <- struct{}{} }()
	t.Cleanup(func() {
		ln.Close()
		close(stop)
		<-done
		<-done
		// A connection to a container removed at once may never see a FIN.
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// Addr returns the service's host:port.
func (s *service) Addr() string { return s.ln.Addr().String() }

// add adds c as an endpoint, not ready until its /readiness says so.
func (s *service) add(c *container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = append(s.endpoints, &endpoint{c: c})
}

// remove removes c, once it has stopped.
func (s *service) remove(c *container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = slices.DeleteFunc(s.endpoints, func(e *endpoint) bool { return e.c == c })
}

// ready returns the names of the ready endpoints.
func (s *service) ready() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, e := range s.endpoints {
		if e.ready {
			names = append(names, e.c.Name)
		}
	}
	return names
}

// waitReady waits until c is a ready endpoint.
func (s *service) waitReady(t *testing.T, c *container) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(s.ready(), c.Name); {
		if time.Now().After(deadline) {
			t.Fatalf("service: %s not a ready endpoint within 10s (ready: %q)", c.Name, s.ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *service) poll(stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		endpoints := slices.Clone(s.endpoints)
		s.mu.Unlock()
		for _, e := range endpoints {
			ready := false
			if resp, err := s.client.Get("http://" + e.c.Ops + "/readiness"); err == nil {
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
			s.mu.Lock()
			e.ready = ready
			s.mu.Unlock()
		}
	}
}

// pick returns the next ready endpoint's app address, or "" if none is ready.
func (s *service) pick() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range s.endpoints {
		e := s.endpoints[s.next%len(s.endpoints)]
		s.next++
		if e.ready {
			return e.c.App
		}
	}
	return ""
}

func (s *service) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		go s.proxy(conn.(*net.TCPConn))
	}
}

// proxy copies bytes both ways between client and a ready endpoint, passing
// on half-closes, so that the endpoint closing an idle keep-alive connection
// reaches nginx as it would directly. No ready endpoint, or one that cannot
// be reached, closes the connection, as kube-proxy's rules would refuse it.
func (s *service) proxy(client *net.TCPConn) {
	s.track(client)
	defer s.untrack(client)
	addr := s.pick()
	if addr == "" {
		return
	}
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	backend := conn.(*net.TCPConn)
	s.track(backend)
	defer s.untrack(backend)
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(backend, client)
		backend.CloseWrite() // the client is done sending; an error shows on the other copy
		errc <- err
	}()
	_, err = io.Copy(client, backend)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		client.SetLinger(0) // the endpoint reset the connection: reset the client's too
		return
	}
	client.CloseWrite() // the endpoint closed: pass the FIN on
	<-errc
}

func (s *service) track(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = true
}

// untrack closes c and forgets it.
func (s *service) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}
