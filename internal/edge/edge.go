// Package edge renders the nginx config templates in nginx/ and runs nginx
// with them as a child process: for the tests, and for `make up`.
//
// The templates are rendered as the official nginx image renders them at
// start (envsubst of the environment variables NGINX_ENVSUBST_FILTER
// matches), and Render is that substitution: the frontend Deployment and the
// secure-monolith pod set the variables in their env; the tests, `make up`
// and the test cluster's stand-in image set them from Params. Everything
// that differs between those places is a variable: listeners, certificate
// directory, upstream servers, the UI's directory, the redirect's port and
// the form of the http2 switch, which depends on the nginx version.
package edge

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The templates' variables. Every one starts with EDGE_, so the manifests'
// NGINX_ENVSUBST_FILTER (EnvFilter) substitutes these and nothing else.
const (
	VarHTTPSListen     = "EDGE_HTTPS_LISTEN"     // the TLS listener: port or host:port
	VarHTTPListen      = "EDGE_HTTP_LISTEN"      // the redirect to HTTPS: port or host:port
	VarTLSDir          = "EDGE_TLS_DIR"          // the directory with cert.pem and key.pem
	VarHTTP2           = "EDGE_HTTP2"            // an HTTP2 value: how HTTP/2 is turned on
	VarRedirectPort    = "EDGE_REDIRECT_PORT"    // "" (443) or ":port": the port the redirect names
	VarUIDir           = "EDGE_UI_DIR"           // the UI's files, served at /ui/
	VarDrainFile       = "EDGE_DRAIN_FILE"       // once this file exists, /healthz answers 503
	VarAuthServers     = "EDGE_AUTH_SERVERS"     // the auth_app upstream's server directives
	VarHelloServers    = "EDGE_HELLO_SERVERS"    // the hello_app upstream's server directives
	VarMonolithServers = "EDGE_MONOLITH_SERVERS" // the monolith_app upstream's server directives
)

// EnvFilter is the NGINX_ENVSUBST_FILTER the manifests set: the templates'
// variables, and no other variable of the container.
const EnvFilter = "^EDGE_"

// HTTP2 is the value of EDGE_HTTP2, which ends the TLS listener's directive
// in the templates, `listen ${EDGE_HTTPS_LISTEN} ssl default_server${EDGE_HTTP2};`,
// so that the one template runs without a warning on every nginx:
// nginx 1.25.1 and later warn that the listen directive's http2 parameter
// is deprecated, and earlier ones do not know the http2 directive.
type HTTP2 string

const (
	// HTTP2Parameter turns HTTP/2 on with the listen directive's http2
	// parameter, for nginx before 1.25.1 (Debian 12's 1.22).
	HTTP2Parameter HTTP2 = " http2"
	// HTTP2Directive ends the listen directive and adds `http2 on;`, for
	// nginx 1.25.1 and later.
	HTTP2Directive HTTP2 = "; http2 on"
)

// HTTP2For returns the form of the http2 switch for nginx version v.
func HTTP2For(v Version) HTTP2 {
	if v.AtLeast(Version{1, 25, 1}) {
		return HTTP2Directive
	}
	return HTTP2Parameter
}

// Version is an nginx version, such as 1.22.1.
type Version struct{ Major, Minor, Patch int }

var versionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`)

// ParseVersion parses the version at the start of s: "1.22.1", or an image
// tag such as "1.30.7-alpine".
func ParseVersion(s string) (Version, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("edge: %q does not start with an nginx version such as 1.22.1", s)
	}
	var v Version
	for i, p := range []*int{&v.Major, &v.Minor, &v.Patch} {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return Version{}, fmt.Errorf("edge: version %q: %w", s, err)
		}
		*p = n
	}
	return v, nil
}

// AtLeast reports whether v is w or later.
func (v Version) AtLeast(w Version) bool {
	return slices.Compare([]int{v.Major, v.Minor, v.Patch}, []int{w.Major, w.Minor, w.Patch}) >= 0
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Params are the values of the templates' variables for one place they run.
// Kubernetes sets the same variables in the containers' env.
type Params struct {
	HTTPSListen string // EDGE_HTTPS_LISTEN: "8443" in a container, "127.0.0.1:PORT" here
	HTTPListen  string // EDGE_HTTP_LISTEN: the redirect listener (frontend only)
	TLSDir      string // EDGE_TLS_DIR: cert.pem and key.pem (the tls-certs Secret's mount)
	HTTP2       HTTP2  // EDGE_HTTP2: see HTTP2For
	// RedirectPort is the port the redirect to HTTPS names, if not 0 or
	// 443: where the TLS listener is not reached as 443, as with `make up`.
	RedirectPort int
	UIDir        string // EDGE_UI_DIR: the UI's files (frontend only)
	// DrainFile is EDGE_DRAIN_FILE (frontend only): once a file exists
	// there, the TLS listener's /healthz answers 503 and everything else
	// is served as before. In Kubernetes the pod's preStop creates it, so
	// that the readiness probe takes a stopping pod out of the Service's
	// endpoints while nginx still accepts connections
	// (deployments/frontend.yaml says why).
	DrainFile string
	// Upstream servers (host:port each), one server directive each; see
	// Servers. In Kubernetes one Service address each; the tests use several.
	Auth, Hello, Monolith []string
}

// Env returns p as the templates' variables, as a container's env would
// set them.
func (p Params) Env() map[string]string {
	redirect := ""
	if p.RedirectPort != 0 && p.RedirectPort != 443 {
		redirect = ":" + strconv.Itoa(p.RedirectPort)
	}
	env := map[string]string{
		VarHTTPSListen:  p.HTTPSListen,
		VarHTTPListen:   p.HTTPListen,
		VarTLSDir:       strings.TrimSuffix(p.TLSDir, "/"),
		VarHTTP2:        string(p.HTTP2),
		VarRedirectPort: redirect,
		VarUIDir:        strings.TrimSuffix(p.UIDir, "/"),
		VarDrainFile:    p.DrainFile,
	}
	for name, addrs := range map[string][]string{VarAuthServers: p.Auth, VarHelloServers: p.Hello, VarMonolithServers: p.Monolith} {
		if len(addrs) > 0 {
			env[name] = Servers(addrs...)
		} else {
			env[name] = ""
		}
	}
	return env
}

// Servers returns the server directives of an upstream with these
// addresses, as the EDGE_*_SERVERS variables hold them, each with
// max_fails=0 (nginx/frontend.conf.template's header says why).
func Servers(addrs ...string) string {
	lines := make([]string, len(addrs))
	for i, a := range addrs {
		lines[i] = "server " + a + " max_fails=0;"
	}
	return strings.Join(lines, "\n    ")
}

// Render returns tmpl, a template from nginx/, rendered with p. It fails if
// the template refers to a variable p leaves empty (only EDGE_REDIRECT_PORT
// may be), or to an upper-case variable that is not one of the templates'.
func (p Params) Render(tmpl string) (string, error) {
	env := p.Env()
	var errs []error
	for _, name := range EnvReferences(tmpl) {
		v, ok := env[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("the template refers to ${%s}, which is not one of its variables", name))
		case v == "" && name != VarRedirectPort:
			errs = append(errs, fmt.Errorf("the template refers to ${%s}, which the parameters leave empty", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("edge: rendering: %w", err)
	}
	return Render(tmpl, env), nil
}

// Render returns tmpl with each $NAME and ${NAME} whose NAME is a key of vars
// replaced by its value, and everything else left as it is: what envsubst
// does in the official nginx image (20-envsubst-on-templates.sh) when these
// are the variables its filter lets through. nginx's own variables, like
// $host, stay.
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

// FilterEnv returns the variables of environ ("NAME=value" each) whose names
// filter matches, as the official image's entrypoint chooses the variables
// envsubst substitutes from NGINX_ENVSUBST_FILTER (an empty filter matches
// every name, as there).
func FilterEnv(environ []string, filter string) (map[string]string, error) {
	re, err := regexp.Compile(filter)
	if err != nil {
		return nil, fmt.Errorf("edge: NGINX_ENVSUBST_FILTER %q: %w", filter, err)
	}
	vars := map[string]string{}
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok && re.MatchString(name) {
			vars[name] = value
		}
	}
	return vars, nil
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
