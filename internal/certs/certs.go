// Package certs creates a small private PKI for local and test TLS: a
// self-signed CA and one server certificate signed by it, both ECDSA P-256.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written by WriteDir, as the tls-certs Secret and nginx expect them.
const (
	CAFile   = "ca.pem"   // the CA certificate clients trust
	CertFile = "cert.pem" // the server certificate
	KeyFile  = "key.pem"  // the server's private key (mode 0600)
)

// Validity periods. The CA's private key is never written, so new server
// certificates need a new CA: both are short-lived and made together.
const (
	CAValidity     = 365 * 24 * time.Hour
	ServerValidity = 90 * 24 * time.Hour
)

// DefaultHosts are always in the server certificate's subject alternative names.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// ErrExist is returned by WriteDir when a file exists and overwriting was not asked for.
var ErrExist = errors.New("file exists")

// Bundle is a generated CA certificate, server certificate and server key, PEM-encoded.
type Bundle struct {
	CA   []byte // CERTIFICATE
	Cert []byte // CERTIFICATE
	Key  []byte // PKCS #8 private key
}

// Generate creates a CA and a server certificate for DefaultHosts plus hosts
// (DNS names or IP addresses), valid from now.
func Generate(hosts []string, now time.Time) (*Bundle, error) {
	dnsNames, ips, err := splitHosts(append(append([]string{}, DefaultHosts...), hosts...))
	if err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generating CA key: %w", err)
	}
	notBefore := now.Add(-time.Hour) // tolerate clocks a little behind ours
	caTemplate := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"example.com/app"}, CommonName: "example.com/app local CA"},
		NotBefore:             notBefore,
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := sign(caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("certs: parsing CA certificate: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generating server key: %w", err)
	}
	template := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"example.com/app"}, CommonName: dnsNames[0]},
		NotBefore:   notBefore,
		NotAfter:    now.Add(ServerValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}
	der, err := sign(template, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: encoding server key: %w", err)
	}
	return &Bundle{
		CA:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// sign sets a random serial number on template and signs it with parent's key.
func sign(template, parent *x509.Certificate, pub *ecdsa.PublicKey, parentKey *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: generating serial number: %w", err)
	}
	template.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("certs: creating certificate %q: %w", template.Subject.CommonName, err)
	}
	return der, nil
}

// splitHosts sorts hosts into DNS names and IP addresses, dropping
// duplicates and keeping the order.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	seen := make(map[string]bool)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if strings.ContainsAny(h, " /:@") {
			return nil, nil, fmt.Errorf("certs: host %q is neither a DNS name nor an IP address", h)
		}
		dnsNames = append(dnsNames, h)
	}
	return dnsNames, ips, nil
}

// WriteDir writes b into dir (created if missing) as CAFile, CertFile and
// KeyFile, the key with mode 0600. Unless overwrite is set, it writes nothing
// if any of the three exists and returns an error wrapping ErrExist.
func (b *Bundle) WriteDir(dir string, overwrite bool) error {
	files := []struct {
		name string
		data []byte
		perm fs.FileMode
	}{
		{CAFile, b.CA, 0o644},
		{CertFile, b.Cert, 0o644},
		{KeyFile, b.Key, 0o600},
	}
	if !overwrite {
		for _, f := range files {
			path := filepath.Join(dir, f.name)
			if _, err := os.Lstat(path); err == nil {
				return fmt.Errorf("certs: %s: %w", path, ErrExist)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("certs: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.data, f.perm, overwrite); err != nil {
			return fmt.Errorf("certs: %w", err)
		}
	}
	return nil
}

// writeFile is os.WriteFile that also sets perm on a file that already
// existed and, unless overwrite, fails rather than replace one.
func writeFile(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return err
	}
	// Tighten the mode before writing: a replaced key file may have been world-readable.
	if err := f.Chmod(perm); err != nil {
		f.Close() // the Chmod error is the one to report
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close() // the Write error is the one to report
		return err
	}
	return f.Close()
}
