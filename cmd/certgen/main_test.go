package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"example.com/app/internal/certs"
)

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	var stdout bytes.Buffer
	if err := run([]string{"certgen", "-out", dir, "-hosts", "frontend.example.com,10.1.2.3"}, &stdout, io.Discard); err != nil {
		t.Fatalf("run(-out %s) error = %v", dir, err)
	}
	if !strings.Contains(stdout.String(), filepath.Join(dir, certs.CAFile)) {
		t.Errorf("run: stdout = %q, want it to name %s", stdout.String(), certs.CAFile)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		t.Fatalf("loading the written cert.pem and key.pem: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(readFile(t, filepath.Join(dir, certs.CAFile)))) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "frontend.example.com", "10.1.2.3"} {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("cert.pem does not verify for %q with ca.pem: %v", host, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, certs.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: mode %v, error %v; want 0600", fi.Mode().Perm(), err)
	}

	key := readFile(t, filepath.Join(dir, certs.KeyFile))
	err = run([]string{"certgen", "-out", dir}, io.Discard, io.Discard)
	if !errors.Is(err, certs.ErrExist) || !strings.Contains(err.Error(), "use -force (make certs FORCE=1)") {
		t.Errorf("run(-out %s) again: error = %v, want ErrExist naming -force and make certs FORCE=1", dir, err)
	}
	if readFile(t, filepath.Join(dir, certs.KeyFile)) != key {
		t.Error("run without -force replaced key.pem")
	}
	if err := run([]string{"certgen", "-out", dir, "-force"}, io.Discard, io.Discard); err != nil {
		t.Errorf("run(-out %s -force) error = %v", dir, err)
	}
	if readFile(t, filepath.Join(dir, certs.KeyFile)) == key {
		t.Error("run with -force kept the old key.pem, want a new one")
	}
}

func TestRunBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"certgen", "-nope"},
		{"certgen", "extra"},
		{"certgen", "-hosts", "https://example.com"},
	} {
		if err := run(append(args, "-out", t.TempDir()), io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) error = nil, want an error", args)
		}
	}
}

// TestNoPrivateKeyCommitted fails if any file tracked by git holds a
// PEM-encoded private key: keys come from certgen and stay in the ignored tls/.
func TestNoPrivateKeyCommitted(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git work tree (%v): nothing is committed", err)
	}
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = strings.TrimSpace(string(root))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(files) == 0 || files[0] == "" {
		t.Fatal("git ls-files listed no files, want the repository's files")
	}
	for _, name := range filesWithPrivateKeys(t, cmd.Dir, files) {
		t.Errorf("%s is tracked by git and holds a private key; remove it from the repository and its history", name)
	}
}

func TestFilesWithPrivateKeys(t *testing.T) {
	dir := t.TempDir()
	b, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"cert.pem": b.Cert, "key.pem": b.Key, "main.go": []byte("package main\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := filesWithPrivateKeys(t, dir, []string{"cert.pem", "key.pem", "main.go", "deleted.go"})
	if !slices.Equal(got, []string{"key.pem"}) {
		t.Errorf("filesWithPrivateKeys = %q, want [key.pem]", got)
	}
}

// filesWithPrivateKeys returns those of files (relative to dir) that hold
// the PEM armour of any kind of private key ("BEGIN PRIVATE KEY", "BEGIN EC
// PRIVATE KEY", "BEGIN OPENSSH PRIVATE KEY", ...). Missing files are skipped.
func filesWithPrivateKeys(t *testing.T, dir string, files []string) []string {
	t.Helper()
	marker := []byte("PRIVATE" + " KEY-----") // built from parts, so this file does not match
	var found []string
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree, not yet in the index
		}
		if err != nil {
			t.Errorf("reading %s: %v", name, err)
			continue
		}
		if bytes.Contains(b, marker) {
			found = append(found, name)
		}
	}
	return found
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
