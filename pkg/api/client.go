package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"syscall"
)

// ErrNoAgent means nothing listens on the socket: the agent is not running.
var ErrNoAgent = errors.New("the agent is not running")

// Client talks to an agent's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path ("" means DefaultSocket).
// It does not connect until the first request.
func NewClient(path string) *Client {
	if path == "" {
		path = DefaultSocket
	}
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Path is the socket's path.
func (c *Client) Path() string { return c.path }

// Get fetches route (e.g. "/v1/status") with query q and decodes the JSON
// body into out.
func (c *Client) Get(ctx context.Context, route string, q url.Values, out any) error {
	body, err := c.Stream(ctx, route, q)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("api: decode %s: %w", route, err)
	}
	return nil
}

// Stream fetches route and returns the body for the caller to read (e.g. a
// stream of JSON lines); the caller closes it. Cancelling ctx ends it.
func (c *Client) Stream(ctx context.Context, route string, q url.Values) (io.ReadCloser, error) {
	return c.do(ctx, http.MethodGet, route, q)
}

// Post sends a POST to route and decodes the JSON response into out (nil
// to discard it).
func (c *Client) Post(ctx context.Context, route string, q url.Values, out any) error {
	body, err := c.do(ctx, http.MethodPost, route, q)
	if err != nil {
		return err
	}
	defer body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, body)
		return nil
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("api: decode %s: %w", route, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, route string, q url.Values) (io.ReadCloser, error) {
	u := url.URL{Scheme: "http", Host: "vigil", Path: route, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return resp.Body, nil
}

func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (nothing listens on %s): start it with `vigil agent`, or read a log directory with --data-dir: %w", ErrNoAgent, c.path, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied on %s: the control socket is root-only; run with sudo: %w", c.path, err)
	}
	return fmt.Errorf("api: %w", err)
}
