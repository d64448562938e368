package agent

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/eventquery"
)

// handleEvents serves GET /v1/events (docs/API.md): the query parameters
// are `vigil events` filters, the body is one JSON entry per line, and
// follow=1 keeps streaming until the client goes away. It reads the
// segment files like any other reader and never touches the writer, so a
// slow or stuck client cannot hold up the data path.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	serveEvents(w, r, &eventquery.Source{Dir: a.cfg.DataDir, Logger: a.log})
}

// serveEvents is handleEvents without the agent, for tests.
func serveEvents(w http.ResponseWriter, r *http.Request, src *eventquery.Source) {
	q := r.URL.Query()
	follow, err := eventquery.ParseFollow(q)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, errors.New("follow: "+err.Error()))
		return
	}
	f, err := eventquery.ParseValues(q, time.Now())
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if follow && f.Reverse {
		api.WriteError(w, http.StatusBadRequest, errors.New("follow cannot be combined with reverse"))
		return
	}
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	started := false
	err = src.Run(r.Context(), f, follow, func(e *auditlog.Entry) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
		if err := enc.Encode(e); err != nil {
			return err // the client went away
		}
		if follow && flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if r.Context().Err() != nil {
		return
	}
	if err != nil {
		if !started {
			code := http.StatusInternalServerError
			if errors.Is(err, eventquery.ErrNoLog) {
				code = http.StatusNotFound
			}
			api.WriteError(w, code, err)
			return
		}
		// Mid-stream the status is sent: say so in a last line.
		_ = enc.Encode(api.Error{Error: err.Error()})
		return
	}
	if !started {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
}
