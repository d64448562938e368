// Package api is the agent's control API: HTTP/1.1 with JSON bodies over a
// root-only unix socket. The server side lets the daemon register handlers;
// the client side is what the CLI uses. docs/API.md documents every route.
//
// The API is versioned by path prefix (/v1/...). A route never changes
// meaning within a version; new fields may be added to responses, so clients
// must ignore fields they do not know.
package api

import (
	"encoding/json"
	"errors"
	"net/http"
)

// DefaultSocket is where the agent listens unless configured otherwise.
const DefaultSocket = "/run/vigil/vigil.sock"

// Prefix starts every route of this API version.
const Prefix = "/v1"

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// WriteJSON writes v as the JSON body of a 200 response.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to tell it
}

// WriteError writes err as an Error body with the given status code.
func WriteError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	msg := "unknown error"
	if err != nil {
		msg = err.Error()
	}
	_ = json.NewEncoder(w).Encode(Error{Error: msg})
}

// StatusError is returned by the client for a non-2xx response.
type StatusError struct {
	Code    int    // HTTP status
	Message string // the server's Error.Error
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return http.StatusText(e.Code)
	}
	return e.Message
}

// IsNotFound reports whether err is a 404 from the agent (e.g. an older
// agent that lacks a route).
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}
