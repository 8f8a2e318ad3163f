// Package user holds the users who may log in and checks their passwords.
//
// Users come from an htpasswd-style file, one "name:bcrypt-hash" per line,
// optionally followed by ":email". Without a file, the course's demo user
// "user" with password "password" exists.
package user

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// MaxPasswordSize is the longest password bcrypt looks at, in bytes. Longer
// passwords are rejected: bcrypt would silently ignore the rest.
const MaxPasswordSize = 72

// Errors Authenticate returns. Callers must answer all of them the same way,
// so that a client cannot tell which one happened.
var (
	ErrBadCredentials  = errors.New("user: wrong name or password")
	ErrPasswordTooLong = fmt.Errorf("user: password longer than %d bytes", MaxPasswordSize)
)

// User is someone who may log in.
type User struct {
	Name  string
	Email string
	hash  []byte
}

// Store is a read-only set of users.
type Store struct {
	users map[string]User
	// dummy is a hash as costly as the costliest of the users' hashes,
	// compared against when the name is unknown so that unknown names take
	// as long as wrong passwords. (Give every user the same cost, or the
	// cheaper ones can be told apart by timing.)
	dummy func() []byte
}

// demoHash is bcrypt("password") at the default cost; it is the course's demo user.
const demoHash = "$2a$10$Bthr9XIX0Pl5uwnipHiNx.E9YM.O1wnndZ/w5cAzvZ8MoQ46IBgiy"

// defaultDummy is the hash of a random, forgotten password at the default
// cost: most users files need no other dummy, and making one takes time.
const defaultDummy = "$2a$10$gW0JeRZDyJJQNTwyggnm2eqOoJ6aatV6eYR9atmTod9OUAVlv/FLO"

// Demo returns a Store with only the course's demo user, user/password.
func Demo() *Store {
	s, err := Parse(strings.NewReader("user:" + demoHash + ":user@example.com\n"))
	if err != nil {
		panic(err) // demoHash is a constant: this cannot happen
	}
	return s
}

// Load reads a users file; see Parse for its format.
func Load(path string) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("user: %w", err)
	}
	defer f.Close()
	s, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	go s.dummy() // hash it now, off the start-up path, rather than on the first unknown name
	return s, nil
}

// Parse reads lines of "name:bcrypt-hash" or "name:bcrypt-hash:email".
// Blank lines and lines starting with # are skipped. A malformed line is an
// error naming its number. At least one user is required.
func Parse(r io.Reader) (*Store, error) {
	users := make(map[string]User)
	maxCost := 0
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		u, cost, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := users[u.Name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, u.Name)
		}
		users[u.Name] = u
		maxCost = max(maxCost, cost)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading users: %w", err)
	}
	if len(users) == 0 {
		return nil, errors.New("no users")
	}
	return &Store{users: users, dummy: sync.OnceValue(func() []byte { return dummyHash(maxCost) })}, nil
}

func parseLine(line string) (User, int, error) {
	name, rest, ok := strings.Cut(line, ":")
	if !ok || name == "" {
		return User{}, 0, errors.New(`want "name:bcrypt-hash[:email]"`)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return User{}, 0, fmt.Errorf("user name %q has a space or control character", name)
	}
	hash, email, _ := strings.Cut(rest, ":")
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return User{}, 0, fmt.Errorf("user %q: not a bcrypt hash (htpasswd -B makes one): %w", name, err)
	}
	return User{Name: name, Email: email, hash: []byte(hash)}, cost, nil
}

func dummyHash(cost int) []byte {
	if cost == bcrypt.DefaultCost {
		return []byte(defaultDummy)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		panic(err) // only for an invalid cost, which Parse has ruled out
	}
	return h
}

// Len returns the number of users.
func (s *Store) Len() int { return len(s.users) }

// Authenticate returns the user if password is theirs. It takes about as long
// for an unknown name as for a wrong password.
func (s *Store) Authenticate(name, password string) (User, error) {
	u, known := s.users[name]
	hash := u.hash
	if !known {
		hash = s.dummy()
	}
	if len(password) > MaxPasswordSize {
		// Still pay for a comparison, so the answer's timing tells nothing.
		_ = bcrypt.CompareHashAndPassword(hash, []byte(password[:MaxPasswordSize])) // the result does not matter
		return User{}, ErrPasswordTooLong
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	if err != nil || !known {
		return User{}, ErrBadCredentials
	}
	return u, nil
}

// Hash returns the bcrypt hash of password at the default cost, for tests and
// for making users files.
func Hash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}
