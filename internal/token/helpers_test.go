package token_test

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
)

func itoa(n int64) string             { return strconv.FormatInt(n, 10) }
func errorsIs(err, target error) bool { return errors.Is(err, target) }

func pemDecode(b []byte) (*pem.Block, []byte) { return pem.Decode(b) }

func parsePKCS8(block *pem.Block) (ed25519.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T, want Ed25519", k)
	}
	return priv, nil
}
