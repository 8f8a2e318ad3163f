package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"example.com/app/internal/certs"
)

func TestGenerate(t *testing.T) {
	now := time.Now()
	tests := []struct {
		hosts     []string
		wantDNS   []string
		wantIPs   []string
		verifyFor []string // names a client may connect to
	}{
		{
			hosts:     nil,
			wantDNS:   []string{"localhost"},
			wantIPs:   []string{"127.0.0.1", "::1"},
			verifyFor: []string{"localhost", "127.0.0.1", "::1"},
		},
		{
			hosts:     []string{"frontend.example.com", " 10.0.0.5", "", "localhost", "*.app.test"},
			wantDNS:   []string{"localhost", "frontend.example.com", "*.app.test"},
			wantIPs:   []string{"127.0.0.1", "::1", "10.0.0.5"},
			verifyFor: []string{"localhost", "frontend.example.com", "10.0.0.5", "x.app.test"},
		},
	}
	for _, tt := range tests {
		b, err := certs.Generate(tt.hosts, now)
		if err != nil {
			t.Fatalf("Generate(%q) error = %v", tt.hosts, err)
		}
		ca, cert := parseCert(t, b.CA), parseCert(t, b.Cert)
		if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("Generate(%q): CA IsCA = %v, KeyUsage = %b, want a CA that signs certificates", tt.hosts, ca.IsCA, ca.KeyUsage)
		}
		if cert.IsCA {
			t.Errorf("Generate(%q): server certificate IsCA = true, want false", tt.hosts)
		}
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			t.Errorf("Generate(%q): ExtKeyUsage = %v, want [serverAuth]", tt.hosts, cert.ExtKeyUsage)
		}
		if !slices.Equal(cert.DNSNames, tt.wantDNS) {
			t.Errorf("Generate(%q): DNSNames = %q, want %q", tt.hosts, cert.DNSNames, tt.wantDNS)
		}
		var ips []string
		for _, ip := range cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		if !slices.Equal(ips, tt.wantIPs) {
			t.Errorf("Generate(%q): IPAddresses = %q, want %q", tt.hosts, ips, tt.wantIPs)
		}
		if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("Generate(%q): public key %T, want ECDSA P-256", tt.hosts, cert.PublicKey)
		}
		if cert.NotBefore.After(now) || cert.NotAfter.Before(now.Add(80*24*time.Hour)) || cert.NotAfter.After(ca.NotAfter) {
			t.Errorf("Generate(%q): server certificate valid %v to %v, CA until %v; want from before now, at least 80 days and within the CA's",
				tt.hosts, cert.NotBefore, cert.NotAfter, ca.NotAfter)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		for _, name := range tt.verifyFor {
			opts := x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("Generate(%q): Verify for %q error = %v", tt.hosts, name, err)
			}
		}
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: "evil.example.com", Roots: roots}); err == nil {
			t.Errorf("Generate(%q): Verify for evil.example.com error = nil, want an error", tt.hosts)
		}
		// The key must match the certificate, as nginx checks when loading them.
		if _, err := tls.X509KeyPair(b.Cert, b.Key); err != nil {
			t.Errorf("Generate(%q): tls.X509KeyPair error = %v", tt.hosts, err)
		}
	}
}

func TestGenerateRejectsBadHost(t *testing.T) {
	for _, host := range []string{"http://x", "a b", "host:443"} {
		if _, err := certs.Generate([]string{host}, time.Now()); err == nil {
			t.Errorf("Generate([%q]) error = nil, want an error", host)
		}
	}
}

func TestGenerateIsFresh(t *testing.T) {
	a, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if string(a.Key) == string(b.Key) || parseCert(t, a.Cert).SerialNumber.Cmp(parseCert(t, b.Cert).SerialNumber) == 0 {
		t.Error("two Generate calls returned the same key or serial number, want fresh ones")
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls") // WriteDir creates it
	b, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteDir(dir, false); err != nil {
		t.Fatalf("WriteDir(%q, false) error = %v", dir, err)
	}
	for name, want := range map[string]os.FileMode{certs.CAFile: 0o644, certs.CertFile: 0o644, certs.KeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("WriteDir: %s mode = %v, want %v", name, got, want)
		}
	}

	// A second run refuses and leaves the files alone.
	other, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.WriteDir(dir, false); !errors.Is(err, certs.ErrExist) {
		t.Errorf("WriteDir(%q, false) on existing files error = %v, want ErrExist", dir, err)
	}
	if got := readFile(t, filepath.Join(dir, certs.KeyFile)); got != string(b.Key) {
		t.Error("WriteDir without overwrite changed key.pem")
	}

	// Overwriting replaces the files and tightens a loosened key mode.
	if err := os.Chmod(filepath.Join(dir, certs.KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := other.WriteDir(dir, true); err != nil {
		t.Fatalf("WriteDir(%q, true) error = %v", dir, err)
	}
	if got := readFile(t, filepath.Join(dir, certs.CertFile)); got != string(other.Cert) {
		t.Error("WriteDir with overwrite did not replace cert.pem")
	}
	if fi, err := os.Stat(filepath.Join(dir, certs.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("WriteDir with overwrite: key.pem mode = %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
}

func TestWriteDirRefusesIfAnyFileExists(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, certs.KeyFile), []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := certs.Generate(nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteDir(dir, false); !errors.Is(err, certs.ErrExist) {
		t.Fatalf("WriteDir(%q, false) with key.pem present error = %v, want ErrExist", dir, err)
	}
	for _, name := range []string{certs.CAFile, certs.CertFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("WriteDir refused but wrote %s, want nothing written", name)
		}
	}
}

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("want exactly one PEM CERTIFICATE block, got %q", pemBytes)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
