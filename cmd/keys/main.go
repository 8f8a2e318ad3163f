// Command keys makes and rotates the Ed25519 keys tokens are signed with,
// and makes users files, as local files that `make secrets` uploads:
//
//	keys gen     [-dir keys] [-force]  the first key pair: jwt-private.pem, jwt-public.pem
//	keys add     [-dir keys]           rotation, step 1: a new key in jwt-next.pem, its public key added to jwt-public.pem
//	keys promote [-dir keys]           step 2: jwt-next.pem becomes jwt-private.pem, the key auth signs with
//	keys retire  [-dir keys]           step 3: jwt-public.pem keeps only the signing (and a staged next) key
//	keys list    [-dir keys]           each key's ID (its RFC 7638 thumbprint), and which one signs
//	keys users   [-out keys/users] [-name user] [-email user@example.com] [-force]
//	                                   a users file with one user and a random password, printed once
//
// jwt-private.pem (PKCS#8 PEM, mode 0600) goes to auth and the monolith
// (JWT_PRIVATE_KEY_FILE); jwt-public.pem (PEM "PUBLIC KEY" blocks) goes to
// every service (JWT_PUBLIC_KEYS_FILE). Between the steps of a rotation,
// upload the files and wait until every pod has re-read them; before
// retire, wait for the longest token lifetime (TOKEN_TTL) as well.
// Files are replaced atomically (written aside, then renamed).
package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"example.com/app/internal/token"
	"example.com/app/internal/user"
)

// The files in -dir.
const (
	privateFile = token.PrivateKeyFile
	publicFile  = token.PublicKeysFile
	nextFile    = "jwt-next.pem"
)

func main() {
	err := run(os.Args, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "keys: %v\n", err)
		os.Exit(1)
	}
}

const usage = "usage: keys gen|add|promote|retire|list|users [flags]; keys <command> -h for its flags"

// run is main with the process's globals passed in, so tests can call it.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	command := args[1]
	switch command {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet(args[0]+" "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "keys", "`directory` of "+privateFile+", "+publicFile+" and "+nextFile)
	var force *bool
	if command == "gen" || command == "users" {
		force = fs.Bool("force", false, "replace existing files")
	}
	var out, name, email *string
	if command == "users" {
		out = fs.String("out", filepath.Join("keys", "users"), "`file` to write the users file to")
		name = fs.String("name", "user", "the user's name")
		email = fs.String("email", "user@example.com", "the user's email address")
	}
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	k := keyDir(*dir)
	switch command {
	case "gen":
		return k.gen(stdout, *force)
	case "add":
		return k.add(stdout)
	case "promote":
		return k.promote(stdout)
	case "retire":
		return k.retire(stdout)
	case "list":
		return k.list(stdout)
	case "users":
		return users(stdout, *out, *name, *email, *force)
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", command)
	}
}

type keyDir string

func (d keyDir) path(name string) string { return filepath.Join(string(d), name) }

func (d keyDir) gen(stdout io.Writer, force bool) error {
	if !force {
		for _, f := range []string{privateFile, publicFile} {
			if _, err := os.Stat(d.path(f)); err == nil {
				return fmt.Errorf("%s exists; use -force to replace the keys (which logs everyone out), or rotate: keys add, promote, retire", d.path(f))
			}
		}
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	k, err := token.GenerateEd25519()
	if err != nil {
		return err
	}
	if err := d.writePrivate(privateFile, k); err != nil {
		return err
	}
	if err := d.writePublic([]token.Key{k}); err != nil {
		return err
	}
	os.Remove(d.path(nextFile)) //nolint:errcheck // a stale staged key, if any, belongs to the old keys
	fmt.Fprintf(stdout, "wrote %s (key %s) and %s\n", d.path(privateFile), k.ID, d.path(publicFile))
	return nil
}

func (d keyDir) add(stdout io.Writer) error {
	if _, err := os.Stat(d.path(nextFile)); err == nil {
		return fmt.Errorf("%s exists: a rotation is under way; promote it first", d.path(nextFile))
	}
	pub, err := d.public()
	if err != nil {
		return err
	}
	k, err := token.GenerateEd25519()
	if err != nil {
		return err
	}
	if err := d.writePrivate(nextFile, k); err != nil {
		return err
	}
	if err := d.writePublic(append(pub, k)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added key %s: staged in %s, its public key in %s.\n"+
		"Next: upload the public keys to every verifier and wait until each has re-read it, then: keys promote\n"+
		"(on the cluster, make rotate STEP=add does this step, the upload and the wait; make secrets never replaces keys)\n", k.ID, d.path(nextFile), d.path(publicFile))
	return nil
}

func (d keyDir) promote(stdout io.Writer) error {
	next, err := d.private(nextFile)
	if err != nil {
		return fmt.Errorf("%w (keys add stages one)", err)
	}
	pub, err := d.public()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(pub, func(k token.Key) bool { return k.ID == next.ID }) {
		return fmt.Errorf("%s does not hold the staged key %s: publish it first (keys add)", d.path(publicFile), next.ID)
	}
	old, err := d.private(privateFile)
	if err != nil {
		return err
	}
	if err := os.Rename(d.path(nextFile), d.path(privateFile)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key %s signs now, instead of %s, which is still accepted.\n"+
		"Next: upload the private key to the signers, wait for the longest token lifetime (TOKEN_TTL), then: keys retire\n"+
		"(on the cluster, make rotate STEP=promote does this step and the upload)\n", next.ID, old.ID)
	return nil
}

func (d keyDir) retire(stdout io.Writer) error {
	signing, err := d.private(privateFile)
	if err != nil {
		return err
	}
	keep := []string{signing.ID}
	if next, err := d.private(nextFile); err == nil {
		keep = append(keep, next.ID)
	}
	pub, err := d.public()
	if err != nil {
		return err
	}
	var kept, retired []token.Key
	for _, k := range pub {
		if slices.Contains(keep, k.ID) {
			kept = append(kept, k)
		} else {
			retired = append(retired, k)
		}
	}
	if len(retired) == 0 {
		fmt.Fprintln(stdout, "no key to retire")
		return nil
	}
	if err := d.writePublic(kept); err != nil {
		return err
	}
	for _, k := range retired {
		fmt.Fprintf(stdout, "retired key %s: its tokens are refused once the pods re-read %s\n", k.ID, d.path(publicFile))
	}
	fmt.Fprintln(stdout, "Next: upload the public keys to every verifier (on the cluster, make rotate STEP=retire does this step and the upload)")
	return nil
}

func (d keyDir) list(stdout io.Writer) error {
	signing, err := d.private(privateFile)
	if err != nil {
		return err
	}
	next, nextErr := d.private(nextFile)
	pub, err := d.public()
	if err != nil {
		return err
	}
	for _, k := range pub {
		role := "accepted"
		switch {
		case k.ID == signing.ID:
			role = "accepted, signs"
		case nextErr == nil && k.ID == next.ID:
			role = "accepted, staged to sign next"
		}
		fmt.Fprintf(stdout, "%s  %s\n", k.ID, role)
	}
	return nil
}

func (d keyDir) private(name string) (token.Key, error) {
	b, err := os.ReadFile(d.path(name))
	if err != nil {
		return token.Key{}, err
	}
	k, err := token.ParsePrivateKey(b)
	if err != nil {
		return token.Key{}, fmt.Errorf("%s: %w", d.path(name), err)
	}
	return k, nil
}

func (d keyDir) public() ([]token.Key, error) {
	b, err := os.ReadFile(d.path(publicFile))
	if err != nil {
		return nil, fmt.Errorf("%w (keys gen makes the first keys)", err)
	}
	keys, err := token.ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(publicFile), err)
	}
	return keys, nil
}

func (d keyDir) writePrivate(name string, k token.Key) error {
	b, err := token.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	return writeFile(d.path(name), b, 0o600)
}

func (d keyDir) writePublic(keys []token.Key) error {
	b, err := token.MarshalPublicKeys(keys)
	if err != nil {
		return err
	}
	return writeFile(d.path(publicFile), b, 0o644)
}

// users writes a users file with one user and a random password, which it
// prints once: it is kept nowhere else.
func users(stdout io.Writer, out, name, email string, force bool) error {
	if _, err := os.Stat(out); err == nil && !force {
		return fmt.Errorf("%s exists; use -force to replace it", out)
	}
	password := rand.Text() // 26 base32 characters, 130 random bits
	hash, err := user.Hash(password)
	if err != nil {
		return err
	}
	line := name + ":" + hash
	if email != "" {
		line += ":" + email
	}
	if _, err := user.Parse(strings.NewReader(line + "\n")); err != nil {
		return fmt.Errorf("the users file would be invalid: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return err
	}
	if err := writeFile(out, []byte(line+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; %s's password, shown only now: %s\n", out, name, password)
	return nil
}

// writeFile replaces name atomically: a reader sees the old content or the
// new, never a part.
func writeFile(name string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) //nolint:errcheck // gone after the rename; otherwise a leftover to clean
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
