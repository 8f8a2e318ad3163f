// Package edge prepares the nginx configs in nginx/ for a machine other than
// their container, and runs nginx with them as a child process: for the
// tests, and for `make up`.
//
// The configs are used as they are deployed, with two steps a container
// does differently: Render substitutes the template's variables as the
// official image does, and Relocate moves the container's listen ports,
// certificate directory and upstream addresses to loopback ones, as a
// Service's port mapping and a Secret mount would.
package edge

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The variables of nginx/frontend.conf.template: host:port of each service's
// app port. Defaults holds their values in Kubernetes.
const (
	AuthUpstream  = "AUTH_UPSTREAM"
	HelloUpstream = "HELLO_UPSTREAM"
)

// Defaults are the template's variables as the frontend Deployment sets them:
// the Services' names and ports.
var Defaults = map[string]string{AuthUpstream: "auth:80", HelloUpstream: "hello:80"}

// Render returns tmpl with each $NAME and ${NAME} whose NAME is a key of vars
// replaced by its value, and everything else left as it is: what envsubst
// does in the official nginx image (20-envsubst-on-templates.sh) when these
// are the variables set. nginx's own variables, like $host, stay.
func Render(tmpl string, vars map[string]string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '$')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String()
		}
		b.WriteString(tmpl[:i])
		tmpl = tmpl[i:]
		name, n := reference(tmpl)
		if v, ok := vars[name]; ok && n > 0 {
			b.WriteString(v)
			tmpl = tmpl[n:]
			continue
		}
		b.WriteByte('$')
		tmpl = tmpl[1:]
	}
}

// reference parses the variable reference at the start of s, which begins
// with '$', as envsubst does: "$NAME" takes the longest run of letters,
// digits and underscores not starting with a digit; "${NAME}" needs the
// closing brace. It returns the name and the length of the reference, or
// n == 0 if there is none.
func reference(s string) (name string, n int) {
	braced := strings.HasPrefix(s, "${")
	start := 1
	if braced {
		start = 2
	}
	end := start
	for end < len(s) && isNameByte(s[end], end == start) {
		end++
	}
	if end == start {
		return "", 0
	}
	if !braced {
		return s[start:end], end
	}
	if end < len(s) && s[end] == '}' {
		return s[start:end], end + 1
	}
	return "", 0
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// EnvReferences returns the names of the variables conf refers to that
// envsubst could replace: those with an upper-case letter, as environment
// variables have. nginx's variables are lower case.
func EnvReferences(conf string) []string {
	var names []string
	for i := strings.IndexByte(conf, '$'); i >= 0; i = strings.IndexByte(conf, '$') {
		conf = conf[i:]
		name, n := reference(conf)
		if n == 0 {
			n = 1
		}
		if strings.ToLower(name) != name && !slices.Contains(names, name) {
			names = append(names, name)
		}
		conf = conf[n:]
	}
	return names
}

// The container's side of what Relocate changes.
const (
	HTTPSPort = "8443"     // the TLS listener (the Service's 443)
	HTTPPort  = "8080"     // the redirect to HTTPS (the Service's 80)
	CertDir   = "/etc/tls" // cert.pem and key.pem: the tls-certs Secret
)

// Mapping says where a config's listeners, certificates and upstreams go.
type Mapping struct {
	HTTPS   string // host:port for the listener on HTTPSPort
	HTTP    string // host:port for the listener on HTTPPort; "" if the config has none
	CertDir string // directory with cert.pem and key.pem, instead of CertDir
	// Upstreams replaces upstream servers: each "server OLD ...;" line
	// becomes one line per new address, with the same parameters.
	Upstreams map[string][]string
	// RedirectPort, if not 0, is the port the HTTP listener's redirect
	// names; by default it names none, meaning 443.
	RedirectPort int
}

var (
	listenRE   = regexp.MustCompile(`(?m)^(\s*listen\s+)(\S+)`)
	redirectRE = regexp.MustCompile(`return (30[1278]) https://\$host\$request_uri;`)
)

// Relocate applies m to conf, a config from nginx/ (rendered if a
// template). It fails if a part m names is missing from conf, or if any
// listener is left on an address that is not loopback.
func Relocate(conf string, m Mapping) (string, error) {
	replace := func(what, old, new string) error {
		if !strings.Contains(conf, old) {
			return fmt.Errorf("edge: relocating %s: config has no %q", what, old)
		}
		conf = strings.ReplaceAll(conf, old, new)
		return nil
	}
	if err := replace("the HTTPS listener", "listen "+HTTPSPort+" ", "listen "+m.HTTPS+" "); err != nil {
		return "", err
	}
	if m.HTTP != "" {
		if err := replace("the HTTP listener", "listen "+HTTPPort+" ", "listen "+m.HTTP+" "); err != nil {
			return "", err
		}
	}
	if err := replace("the certificates", CertDir+"/", strings.TrimSuffix(m.CertDir, "/")+"/"); err != nil {
		return "", err
	}
	for _, old := range sortedKeys(m.Upstreams) {
		if len(m.Upstreams[old]) == 0 {
			return "", fmt.Errorf("edge: relocating upstream %s: no new address", old)
		}
		re := regexp.MustCompile(`(?m)^([ \t]*server )` + regexp.QuoteMeta(old) + `([ \t;].*)$`)
		if !re.MatchString(conf) {
			return "", fmt.Errorf("edge: relocating an upstream: config has no \"server %s\" line", old)
		}
		conf = re.ReplaceAllStringFunc(conf, func(line string) string {
			sub := re.FindStringSubmatch(line)
			lines := make([]string, len(m.Upstreams[old]))
			for i, addr := range m.Upstreams[old] {
				lines[i] = sub[1] + addr + sub[2]
			}
			return strings.Join(lines, "\n")
		})
	}
	if m.RedirectPort != 0 {
		if !redirectRE.MatchString(conf) {
			return "", fmt.Errorf("edge: relocating the redirect: config has no %q", redirectRE)
		}
		conf = redirectRE.ReplaceAllString(conf, "return $1 https://$$host:"+strconv.Itoa(m.RedirectPort)+"$$request_uri;")
	}
	for _, l := range listenRE.FindAllStringSubmatch(conf, -1) {
		host, _, err := net.SplitHostPort(l[2])
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return "", fmt.Errorf("edge: relocated config still listens on %q, want a loopback host:port", l[2])
		}
	}
	return conf, nil
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
