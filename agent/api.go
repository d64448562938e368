package agent

import (
	"net/http"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// routes registers the control API (docs/API.md). Each handler only reads
// state the data path publishes; none takes a lock the proxy holds.
func (a *Agent) routes(s *api.Server) {
	s.HandleFunc("GET "+api.Prefix+"/version", a.handleVersion)
	s.HandleFunc("GET "+api.Prefix+"/events", a.handleEvents)
}

// VersionResponse is the body of GET /v1/version.
type VersionResponse struct {
	version.Info
	Started time.Time `json:"started"`
}

func (a *Agent) handleVersion(w http.ResponseWriter, _ *http.Request) {
	api.WriteJSON(w, VersionResponse{Info: version.Get(), Started: a.started})
}

// closeAPI stops the control API and removes its socket.
func (a *Agent) closeAPI() {
	if a.api != nil {
		if err := a.api.Close(); err != nil {
			a.log.Warn("control socket close", "err", err)
		}
	}
}
