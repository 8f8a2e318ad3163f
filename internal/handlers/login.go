package handlers

import (
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"example.com/app/internal/limit"
	"example.com/app/internal/metrics"
	"example.com/app/internal/respond"
	"example.com/app/internal/token"
	"example.com/app/internal/user"
)

// MaxNameSize is the longest user name Login looks up, in bytes.
const MaxNameSize = 256

// LoginLimits protect Login from password guessing and from floods.
//
// Failures are limited per client network and per (user name, client
// network), never per name alone: a name-wide limit would let anyone lock
// a user out by failing on purpose. A client network is an IPv4 address or
// an IPv6 /64, what one subscriber usually gets.
type LoginLimits struct {
	Networks  *limit.Keyed // failed attempts per client network
	Pairs     *limit.Keyed // failed attempts per user name and client network
	Successes *limit.Keyed // successful logins per client network: generous, against token farming
	Hashing   *limit.Gate  // password checks at once: bcrypt is made to be slow

	// TrustedProxies are peers (the edge nginx) whose X-Real-IP or
	// X-Forwarded-For names the client. Others' are ignored: anyone can send them.
	TrustedProxies []netip.Prefix
}

// DefaultLoginLimits allow 10 failed attempts per client network and 5 per
// user name from one network, then one more every 6 and 12 seconds; 30
// successful logins per client network, then one every 2 seconds (1,800 an
// hour: a browser or a load test's clients are fine). Each set holds at most
// 10,000 keys, about 1.5 MB. Password checks run on all CPUs but one (at
// least one), so that a login flood leaves room for /secure, with up to 64
// more waiting at most a second (a parked request costs no CPU, while an
// immediate 429 invites a flooder to retry at once); beyond that, 429 with
// Retry-After.
func DefaultLoginLimits(trusted []netip.Prefix) *LoginLimits {
	return &LoginLimits{
		Networks:       limit.NewKeyed(10, 6*time.Second, 10_000),
		Pairs:          limit.NewKeyed(5, 12*time.Second, 10_000),
		Successes:      limit.NewKeyed(30, 2*time.Second, 10_000),
		Hashing:        limit.NewGate(max(runtime.GOMAXPROCS(0)-1, 1), 64, time.Second),
		TrustedProxies: trusted,
	}
}

// basicChallenge asks for HTTP Basic credentials.
var basicChallenge = []string{`Basic realm="app", charset="UTF-8"`}

// Login checks the request's HTTP Basic credentials against users and, if
// they match, answers with a token signed by issuer:
// {"token": "<JWT>", "expires_at": "<RFC 3339>"}.
//
// A wrong password and an unknown user get the same answer in about the
// same time. A name over MaxNameSize bytes gets 400 before any lookup.
// Attempts are rate-limited as LoginLimits says (429 with Retry-After), and
// so are password checks beyond what the CPUs can do at once, so that a
// login flood cannot starve the other routes.
func Login(logger *zap.Logger, users *user.Store, issuer *token.Issuer, limits *LoginLimits, m *metrics.Metrics) http.Handler {
	type response struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	unauthorized := func(w http.ResponseWriter, outcome, message string) {
		m.Login(outcome)
		w.Header()["Www-Authenticate"] = basicChallenge
		respond.Error(w, http.StatusUnauthorized, message)
	}
	tooMany := func(w http.ResponseWriter, outcome string, wait time.Duration) {
		m.Login(outcome)
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		respond.Error(w, http.StatusTooManyRequests, "too many login attempts; retry later")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, password, ok := r.BasicAuth()
		if !ok {
			unauthorized(w, metrics.LoginMissingCredentials, "missing credentials: log in with HTTP basic auth")
			return
		}
		if len(name) > MaxNameSize {
			m.Login(metrics.LoginBadCredentials)
			respond.Error(w, http.StatusBadRequest, "user name longer than "+strconv.Itoa(MaxNameSize)+" bytes")
			return
		}
		network := ClientNetwork(r, limits.TrustedProxies)
		if wait := max(limits.Networks.Wait(network), limits.Pairs.Wait(name, network), limits.Successes.Wait(network)); wait > 0 {
			tooMany(w, metrics.LoginRateLimited, wait)
			return
		}
		leave, ok := limits.Hashing.Enter(r.Context())
		if !ok {
			tooMany(w, metrics.LoginBusy, time.Second)
			return
		}
		u, err := users.Authenticate(name, password)
		leave()
		if err != nil {
			limits.Networks.Spend(network)
			limits.Pairs.Spend(name, network)
			outcome := metrics.LoginBadCredentials
			if errors.Is(err, user.ErrPasswordTooLong) {
				outcome = metrics.LoginPasswordTooLong
			}
			unauthorized(w, outcome, "wrong user name or password")
			return
		}
		limits.Successes.Spend(network)
		signed, expires, err := issuer.Issue(u.Name, u.Email)
		if err != nil {
			logger.Error("issuing token", zap.String("user", u.Name), zap.Error(err))
			respond.Error(w, http.StatusInternalServerError, "internal error")
			return
		}
		m.Login(metrics.LoginSuccess)
		w.Header().Set("Cache-Control", "no-store") // RFC 6749 §5.1: never cache a token
		respond.JSON(w, http.StatusOK, response{Token: signed, ExpiresAt: expires.UTC().Format(time.RFC3339)})
	})
}

// ClientIP returns the address of the client that sent r: the peer's, or,
// if the peer is a trusted proxy, the one the proxy names in X-Real-IP or,
// failing that, the last entry of X-Forwarded-For.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !contains(trusted, peer.Unmap()) {
		return host
	}
	if ip, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
		return ip.String()
	}
	forwarded := r.Header.Values("X-Forwarded-For")
	if n := len(forwarded); n > 0 {
		hops := strings.Split(forwarded[n-1], ",")
		if ip, err := netip.ParseAddr(strings.TrimSpace(hops[len(hops)-1])); err == nil {
			return ip.String()
		}
	}
	return host
}

// ClientNetwork returns the network of the client that sent r (see
// ClientIP), the unit the login limits count: an IPv4 address, or the /64
// of an IPv6 one, since one subscriber usually has a whole /64.
func ClientNetwork(r *http.Request, trusted []netip.Prefix) string {
	client := ClientIP(r, trusted)
	ip, err := netip.ParseAddr(client)
	if err != nil {
		return client // not an IP address (a test's or a Unix socket's peer): itself
	}
	if ip = ip.Unmap(); ip.Is6() {
		return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
	}
	return ip.String()
}

func contains(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
