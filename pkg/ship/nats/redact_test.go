package nats

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@127.0.0.1:4222", "nats://alice:xxxxx@127.0.0.1:4222"},
		{"nats://tok3n@127.0.0.1:4222", "nats://xxxxx@127.0.0.1:4222"},
		{"nats://a:p1@h1:4222, nats://b:p2@h2:4222", "nats://a:xxxxx@h1:4222,nats://b:xxxxx@h2:4222"},
		{"nats://a:s3cret@h:bad%zz", "nats://xxxxx@h:bad%zz"},
		{"alice:s3cret@127.0.0.1:4222", "xxxxx@127.0.0.1:4222"},
		{"127.0.0.1:4222", "127.0.0.1:4222"},
	}
	for _, tc := range tests {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// A failed connect must not print the password or token, whatever the
// client library puts into its error.
func TestConnectErrorHidesCredentials(t *testing.T) {
	for _, u := range []string{
		"nats://alice:s3cret@127.0.0.1:1",
		"nats://alice:s3cret@127.0.0.1:notaport",
		"nats://s3cret@127.0.0.1:1",
		"alice:s3cret@127.0.0.1:1",
	} {
		s, err := New(Config{URL: u, Host: "h"})
		if err != nil {
			t.Fatal(err)
		}
		s.timeout = time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.Check(ctx)
		cancel()
		if err == nil {
			t.Fatalf("Check(%s) = nil; want a connect error", u)
		}
		if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "nats: connect") {
			t.Errorf("Check error = %q; want a connect error without the secret", err)
		}
	}
}
