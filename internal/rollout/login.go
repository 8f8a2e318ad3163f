package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// LoginURL returns the /login URL on the same scheme and host as target.
func LoginURL(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/login"}).String(), nil
}

// Login posts to loginURL with HTTP Basic credentials and returns the token
// from the JSON answer {"token": "..."}. Errors never contain the password or
// the token.
func Login(ctx context.Context, client *http.Client, loginURL, user, password string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, loginURL, nil)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	req.SetBasicAuth(user, password)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login: POST %s as %q: %s", loginURL, user, resp.Status)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&body); err != nil {
		return "", fmt.Errorf("login: POST %s: decoding the answer: %w", loginURL, err)
	}
	if body.Token == "" {
		return "", fmt.Errorf("login: POST %s: the answer has no token", loginURL)
	}
	return body.Token, nil
}
