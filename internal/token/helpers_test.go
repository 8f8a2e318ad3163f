package token_test

import (
	"errors"
	"strconv"
)

func itoa(n int64) string             { return strconv.FormatInt(n, 10) }
func errorsIs(err, target error) bool { return errors.Is(err, target) }
