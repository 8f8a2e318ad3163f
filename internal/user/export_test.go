package user

import "golang.org/x/crypto/bcrypt"

// DummyCost returns the bcrypt cost of the hash unknown names are checked against.
func (s *Store) DummyCost() int {
	c, err := bcrypt.Cost(s.dummy())
	if err != nil {
		panic(err)
	}
	return c
}
