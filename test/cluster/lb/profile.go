package lb

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Profile is how one provider's load balancer checks the nodes and what it
// does with the result. The named profiles below are the defaults each
// provider's controller sets for a Service with externalTrafficPolicy:
// Local; every field can be overridden (the command's flags), so a Service's
// annotations, such as the eks overlay's, can be passed as they are.
type Profile struct {
	Name string

	// Every Interval each node's healthCheckNodePort gets GET /healthz;
	// no 200 within Timeout is a failure.
	Interval time.Duration
	Timeout  time.Duration
	// A healthy node turns unhealthy after UnhealthyThreshold failures in
	// a row, an unhealthy one healthy after HealthyThreshold successes.
	UnhealthyThreshold int
	HealthyThreshold   int

	// FailOpen: with no healthy node, new connections go to every node
	// (GKE, AWS NLB); otherwise they are refused.
	FailOpen bool
	// ResetOnUnhealthy: a node turning unhealthy has its open connections
	// reset (AWS); otherwise they stay open until either end closes them
	// (GKE).
	ResetOnUnhealthy bool
}

// profiles are the providers' documented defaults; the sources are in the
// package comment's table.
var profiles = []Profile{
	{
		// GKE's target pool-based external passthrough Network Load Balancer:
		// what a LoadBalancer Service gets without annotations.
		Name: "gke", Interval: 8 * time.Second, Timeout: time.Second,
		UnhealthyThreshold: 3, HealthyThreshold: 1, FailOpen: true,
	},
	{
		// GKE's backend service-based one (cloud.google.com/l4-rbs:
		// enabled, the gke overlay's): its own health check for Local.
		Name: "gke-rbs", Interval: 3 * time.Second, Timeout: time.Second,
		UnhealthyThreshold: 2, HealthyThreshold: 1, FailOpen: true,
	},
	{
		// The in-tree AWS controller's Classic ELB: what a LoadBalancer
		// Service gets on EKS without the AWS Load Balancer Controller.
		Name: "aws-elb", Interval: 10 * time.Second, Timeout: 5 * time.Second,
		UnhealthyThreshold: 6, HealthyThreshold: 2, ResetOnUnhealthy: true,
	},
	{
		// The AWS Load Balancer Controller's NLB with instance targets (the
		// eks overlay's; its annotations pin these same values).
		Name: "aws-nlb", Interval: 10 * time.Second, Timeout: 6 * time.Second,
		UnhealthyThreshold: 2, HealthyThreshold: 2, FailOpen: true, ResetOnUnhealthy: true,
	},
}

// ProfileNames lists the named profiles.
func ProfileNames() []string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	return names
}

// LookupProfile returns the named profile.
func LookupProfile(name string) (Profile, error) {
	i := slices.IndexFunc(profiles, func(p Profile) bool { return p.Name == name })
	if i < 0 {
		return Profile{}, fmt.Errorf("unknown profile %q, want one of %s", name, strings.Join(ProfileNames(), ", "))
	}
	return profiles[i], nil
}

// Validate says what is wrong with p, if anything. As on GKE and AWS, the
// timeout may not exceed the interval, so checks of one node never overlap.
func (p Profile) Validate() error {
	var errs []error
	if p.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", p.Interval))
	}
	if p.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %s: must be positive", p.Timeout))
	} else if p.Interval > 0 && p.Timeout > p.Interval {
		errs = append(errs, fmt.Errorf("timeout %s: must not exceed the interval %s", p.Timeout, p.Interval))
	}
	if p.UnhealthyThreshold < 1 {
		errs = append(errs, fmt.Errorf("unhealthy threshold %d: must be at least 1", p.UnhealthyThreshold))
	}
	if p.HealthyThreshold < 1 {
		errs = append(errs, fmt.Errorf("healthy threshold %d: must be at least 1", p.HealthyThreshold))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("profile %q: %w", p.Name, err)
	}
	return nil
}

// SteerAway is about how long after a node starts failing its checks the
// load balancer stops sending it new connections: the figure a frontend
// pod's preStop sleep must outlast (plus a timeout if the check hangs).
func (p Profile) SteerAway() time.Duration {
	return time.Duration(p.UnhealthyThreshold) * p.Interval
}
