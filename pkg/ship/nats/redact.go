package nats

import (
	"net/url"
	"strings"
)

// redactURL returns the server list with credentials hidden, for errors,
// logs and status: a nats URL may carry user:password or a token as its
// user part. It takes the comma-separated list nats.Connect accepts.
func redactURL(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactOne(p string) string {
	u, err := url.Parse(p)
	if err != nil || !strings.Contains(p, "://") {
		// Unparseable, or no scheme ("user:pass@host:4222" parses with
		// "user" as the scheme): hide everything before the last '@'.
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			scheme, rest = "", p
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = "xxxxx" + rest[at:]
		}
		if ok {
			return scheme + "://" + rest
		}
		return rest
	}
	if u.User == nil {
		return u.String()
	}
	if _, ok := u.User.Password(); !ok {
		// A lone user part is a token, a secret itself.
		u.User = url.User("xxxxx")
		return u.String()
	}
	return u.Redacted()
}

// secrets returns the user and password parts of raw, to scrub them from
// error text produced below us (url.Parse quotes the whole URL).
func secrets(raw string) []string {
	var out []string
	for _, p := range strings.Split(raw, ",") {
		p = strings.TrimSpace(p)
		_, rest, ok := strings.Cut(p, "://")
		if !ok {
			rest = p
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		user, pass, _ := strings.Cut(rest[:at], ":")
		for _, s := range []string{pass, user} {
			if s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// redactedError keeps the cause for errors.Is while its text has the
// credentials of the URL replaced.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// connectError wraps a connection failure to raw without its credentials.
func connectError(raw string, err error) error {
	msg := "nats: connect " + redactURL(raw) + ": " + err.Error()
	for _, s := range secrets(raw) {
		if len(s) > 0 {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
			if esc := url.PathEscape(s); esc != s {
				msg = strings.ReplaceAll(msg, esc, "xxxxx")
			}
		}
	}
	return &redactedError{msg: msg, err: err}
}
