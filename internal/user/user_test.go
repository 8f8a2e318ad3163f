package user_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"example.com/app/internal/user"
)

// hashes made once: bcrypt is slow on purpose.
var (
	aliceHash = mustHash("alice-secret", bcrypt.MinCost)
	bobHash   = mustHash("bob-secret", bcrypt.MinCost+1)
)

func mustHash(pw string, cost int) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		panic(err)
	}
	return string(h)
}

func TestParse(t *testing.T) {
	file := "# users of the app\n\nalice:" + aliceHash + ":alice@example.com\r\n  bob:" + bobHash + "  \n"
	s, err := user.Parse(strings.NewReader(file))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.Len() != 2 {
		t.Errorf("Parse: %d users, want 2", s.Len())
	}
	u, err := s.Authenticate("alice", "alice-secret")
	if err != nil || u.Name != "alice" || u.Email != "alice@example.com" {
		t.Errorf("Authenticate(alice, right password) = %+v, %v; want alice with her email", u, err)
	}
	if u, err := s.Authenticate("bob", "bob-secret"); err != nil || u.Email != "" {
		t.Errorf("Authenticate(bob, right password) = %+v, %v; want bob without email", u, err)
	}
	if got, want := s.DummyCost(), bcrypt.MinCost+1; got != want {
		t.Errorf("dummy hash cost = %d, want %d (the highest of the users')", got, want)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"alice:" + aliceHash + "\nbob\n", "line 2"},
		{"# c\n\nalice:not-a-hash\n", "line 3: user \"alice\": not a bcrypt hash"},
		{":" + aliceHash + "\n", "line 1"},
		{"al ice:" + aliceHash + "\n", "line 1: user name \"al ice\""},
		{"alice:" + aliceHash + "\nalice:" + bobHash + "\n", "line 2: user \"alice\" listed twice"},
		{"# only comments\n", "no users"},
		{"", "no users"},
	}
	for _, tt := range tests {
		_, err := user.Parse(strings.NewReader(tt.file))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want one containing %q", tt.file, err, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("alice:"+aliceHash+"\nbad line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := user.Load(path)
	if err == nil || !strings.Contains(err.Error(), path+": line 2") {
		t.Errorf("Load(file with a bad line 2) error = %v, want one naming the file and line 2", err)
	}
	if _, err := user.Load(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing file) error = %v, want os.ErrNotExist", err)
	}
}

func TestAuthenticate(t *testing.T) {
	s := user.Demo()
	if u, err := s.Authenticate("user", "password"); err != nil || u.Name != "user" || u.Email != "user@example.com" {
		t.Errorf("Demo().Authenticate(user, password) = %+v, %v; want the demo user", u, err)
	}
	tests := []struct {
		name, password string
		want           error
	}{
		{"user", "wrong", user.ErrBadCredentials},
		{"nobody", "password", user.ErrBadCredentials},
		{"user", "", user.ErrBadCredentials},
		{"", "", user.ErrBadCredentials},
		// bcrypt looks at 72 bytes only: "password" + 65 more must not pass as "password"+64.
		{"user", strings.Repeat("p", user.MaxPasswordSize+1), user.ErrPasswordTooLong},
	}
	for _, tt := range tests {
		if _, err := s.Authenticate(tt.name, tt.password); !errors.Is(err, tt.want) {
			t.Errorf("Authenticate(%q, %.10q…) error = %v, want %v", tt.name, tt.password, err, tt.want)
		}
	}
}

// TestLongPasswordNotTruncated: a user whose password is exactly 72 bytes
// must not be let in with those 72 bytes plus anything.
func TestLongPasswordNotTruncated(t *testing.T) {
	pw := strings.Repeat("x", user.MaxPasswordSize)
	s, err := user.Parse(strings.NewReader("long:" + mustHash(pw, bcrypt.MinCost) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("long", pw); err != nil {
		t.Errorf("Authenticate(72-byte password) error = %v, want nil", err)
	}
	if _, err := s.Authenticate("long", pw+"extra"); !errors.Is(err, user.ErrPasswordTooLong) {
		t.Errorf("Authenticate(72-byte password + extra) error = %v, want ErrPasswordTooLong", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("alice:" + aliceHash + "\n")
	f.Add("# comment\n\nbob:" + bobHash + ":bob@example.com\n")
	f.Add("x:y:z\n:::\n")
	f.Add("alice:$2a$04$\n")
	f.Fuzz(func(t *testing.T, file string) {
		s, err := user.Parse(strings.NewReader(file))
		if err != nil {
			return
		}
		if s.Len() == 0 {
			t.Errorf("Parse(%q) returned a store with no users and no error", file)
		}
	})
}
