// Command certgen writes a CA certificate and a server certificate signed by
// it (ECDSA P-256), for nginx's TLS in local runs, tests and the tls-certs
// Secret:
//
//	certgen [-out tls] [-hosts frontend.example.com,10.0.0.5] [-force]
//
// It writes ca.pem, cert.pem and key.pem (mode 0600) and refuses to replace
// existing files unless -force is given. The server certificate always names
// localhost, 127.0.0.1 and ::1. The CA's key is not kept.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"example.com/app/internal/certs"
)

func main() {
	err := run(os.Args, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "certgen: %v\n", err)
		os.Exit(1)
	}
}

// run is main with the process's globals passed in, so tests can call it.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "tls", "`directory` to write "+certs.CAFile+", "+certs.CertFile+" and "+certs.KeyFile+" into")
	hosts := fs.String("hosts", "", "comma-separated DNS names and IP addresses for the server certificate, besides "+strings.Join(certs.DefaultHosts, ", "))
	force := fs.Bool("force", false, "replace existing files")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := certs.Generate(strings.Split(*hosts, ","), time.Now())
	if err != nil {
		return err
	}
	if err := b.WriteDir(*out, *force); err != nil {
		if errors.Is(err, certs.ErrExist) {
			return fmt.Errorf("%w; use -force (make certs FORCE=1) to replace the files in %s", err, *out)
		}
		return err
	}
	fmt.Fprintf(stdout, "wrote %s, %s and %s (the key with mode 0600); trust %s in clients\n",
		filepath.Join(*out, certs.CAFile), filepath.Join(*out, certs.CertFile),
		filepath.Join(*out, certs.KeyFile), filepath.Join(*out, certs.CAFile))
	return nil
}
