package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Server serves the control API on a unix socket. Only peers running as
// the server's own effective uid (root, for the agent) are answered: the
// file mode is 0600 and, in case the mode is ever loosened, each
// connection's peer credentials (SO_PEERCRED; LOCAL_PEERCRED on macOS) are
// checked as well.
type Server struct {
	path string
	ln   *net.UnixListener
	mux  *http.ServeMux
	srv  *http.Server
	log  *slog.Logger
}

// Listen creates the socket at path (creating its directory 0700 if
// missing). A stale socket left by a crashed agent is replaced; a live one
// (another agent answers) is an error.
func Listen(path string, log *slog.Logger) (*Server, error) {
	if path == "" {
		path = DefaultSocket
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("api: create socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("api: %s exists and is not a socket: remove it or choose another --socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api: another agent is serving %s: stop it first, or choose another --socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api: remove stale socket: %w", err)
		}
	}
	// Create the socket in a private temporary directory and rename it into
	// place, so it is never reachable with a looser mode than 0600.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".vigil-sock-")
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpSock := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpSock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	if err := os.Rename(tmpSock, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{path: path, ln: ln, mux: http.NewServeMux(), log: log}
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Handle registers h for pattern (net/http ServeMux syntax, e.g.
// "GET /v1/status"). Register every route before Serve.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc is Handle for a function.
func (s *Server) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, h)
}

// Serve answers requests until ctx ends or Close is called. Handlers run on
// their own goroutines, never on the data path.
func (s *Server) Serve(ctx context.Context) error {
	// Requests inherit ctx, so long streams (events --follow) end when the
	// agent stops instead of holding up its shutdown.
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	uid := os.Geteuid()
	ln := &peerListener{UnixListener: s.ln, uid: uid, log: s.log}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-done:
		}
	}()
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// peerListener drops connections from other users.
type peerListener struct {
	*net.UnixListener
	uid int
	log *slog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err != nil || (uid != l.uid && uid != 0) {
			l.log.Warn("control socket: refused a connection from another user", "uid", uid, "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}
