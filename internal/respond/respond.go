// Package respond writes the services' JSON answers.
package respond

import (
	"encoding/json"
	"net/http"
)

// JSON writes v as a JSON answer with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a value that cannot be encoded gets here: a bug, not a client's fault.
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	Raw(w, status, append(body, '\n'))
}

// Error writes {"error": message} with the given status. The message is
// for clients: short, fixed, and never an internal error's text.
func Error(w http.ResponseWriter, status int, message string) {
	JSON(w, status, struct {
		Error string `json:"error"`
	}{message})
}

// Raw writes body, which must be JSON, with the given status.
func Raw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentType // set before WriteHeader: headers set after it are dropped
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // a failed write means the client went away; nothing to do
}

// Shared header values: assigning these avoids an allocation per answer.
// Header.Add would append to a copy, since their capacity is their length.
var (
	contentType = []string{"application/json"}
	nosniff     = []string{"nosniff"}
)
