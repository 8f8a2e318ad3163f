package browsertest

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the ?v= of each asset reference in frontend/ to the file's hash")

// refRE matches a quoted or url()'d reference to one of the UI's files, such
// as "./lib.js?v=0123456789" or href="style.css?v=0123456789": the name and,
// if there is one, the version.
var refRE = regexp.MustCompile(`(["'(])(\./)?([A-Za-z0-9_-]+\.(?:js|css|svg|png|ico|woff2))(\?v=[^"')]*)?(["')])`)

// hashLen is how many hex digits of the SHA-256 a version has: enough that
// two contents of a file never share one.
const hashLen = 10

// version returns the ?v= value for a file's content.
func version(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])[:hashLen]
}

// readUI returns the UI's files by name. The directory is flat (a ConfigMap
// holds no subdirectories); subdirectories such as browsertest/ are not part
// of the UI.
func readUI(t *testing.T) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(frontendDir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(frontendDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// stamp rewrites every reference in files to the current hash of the file it
// names, until nothing changes: a module's hash covers the versions of the
// modules it imports, so those are stamped first. It returns the names of the
// files it changed.
func stamp(t *testing.T, files map[string][]byte) []string {
	t.Helper()
	var changed []string
	for range len(files) + 1 { // each round settles at least one more level of imports
		again := false
		for name, content := range files {
			out := refRE.ReplaceAllFunc(content, func(m []byte) []byte {
				sub := refRE.FindSubmatch(m)
				target, ok := files[string(sub[3])]
				if !ok {
					return m // reported by TestAssetVersions
				}
				return []byte(string(sub[1]) + string(sub[2]) + string(sub[3]) + "?v=" + version(target) + string(sub[5]))
			})
			if string(out) != string(content) {
				files[name] = out
				again = true
				if !slices.Contains(changed, name) {
					changed = append(changed, name)
				}
			}
		}
		if !again {
			slices.Sort(changed)
			return changed
		}
	}
	t.Fatal("the UI's references do not settle: do two files refer to each other?")
	return nil
}

// TestAssetVersions checks that every reference from one of the UI's files
// to another names a file that exists, with ?v= the hash of its content, so
// the edge may let browsers cache it for a year (nginx/frontend.conf.template);
// and that every file is used. With -update it rewrites the versions.
func TestAssetVersions(t *testing.T) {
	files := readUI(t)
	if *update {
		for _, name := range stamp(t, files) {
			if err := os.WriteFile(filepath.Join(frontendDir, name), files[name], 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("updated the references in %s", name)
		}
	}
	used := map[string]bool{"index.html": true}
	for name, content := range files {
		for _, sub := range refRE.FindAllSubmatch(content, -1) {
			target, v := string(sub[3]), strings.TrimPrefix(string(sub[4]), "?v=")
			used[target] = true
			got, ok := files[target]
			switch {
			case !ok:
				t.Errorf("%s refers to %s, which is not in frontend/", name, target)
			case v != version(got):
				t.Errorf("%s refers to %s?v=%s, want ?v=%s (the start of its SHA-256); run `go test -run TestAssetVersions -update` in frontend/browsertest", name, target, v, version(got))
			}
		}
	}
	for name := range files {
		if !used[name] {
			t.Errorf("frontend/%s is not referenced by the UI: delete it, or reference it with ?v=", name)
		}
	}
}

// TestConfigMapFits checks that frontend/ can become the frontend-ui
// ConfigMap as it is: kubernetes/base's configMapGenerator takes the
// directory's files (not its subdirectories; kubernetes/check checks that
// it lists them all) as keys, which must be valid key names, and a
// ConfigMap holds at most 1 MiB.
func TestConfigMapFits(t *testing.T) {
	keyRE := regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	total := 0
	for name, content := range readUI(t) {
		if !keyRE.MatchString(name) || len(name) > 253 {
			t.Errorf("frontend/%s: not a valid ConfigMap key", name)
		}
		total += len(name) + len(content)
	}
	if total > 1<<20 {
		t.Errorf("frontend/ holds %d bytes, more than a ConfigMap's 1 MiB", total)
	}
}
