package agent

import (
	"context"
	"net/http"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// routes registers the control API (docs/API.md). Each handler only reads
// state the data path publishes; none takes a lock the proxy holds.
func (a *Agent) routes(s *api.Server) {
	s.HandleFunc("GET "+api.Prefix+"/status", a.handleStatus)
	s.HandleFunc("GET "+api.Prefix+"/policy", a.handlePolicy)
	s.HandleFunc("POST "+api.Prefix+"/policy/reload", a.handlePolicyReload)
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

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	api.WriteJSON(w, a.buildStatus(time.Now()))
}

// PolicyResponse is the body of GET /v1/policy: the policy in force and
// the exact bytes it was parsed from.
type PolicyResponse struct {
	PolicyInfo
	Source []byte `json:"source"` // the file's bytes (base64 in JSON); their SHA-256 is SHA256
}

func (a *Agent) handlePolicy(w http.ResponseWriter, _ *http.Request) {
	info, p := a.policyInfo()
	api.WriteJSON(w, PolicyResponse{PolicyInfo: info, Source: p.Source()})
}

// ReloadResponse is the body of a successful POST /v1/policy/reload.
type ReloadResponse struct {
	// Result is "applied" when the file was read, valid and put in force
	// (even with the same contents), or "none" when there is no file at
	// the default path and the built-in policy stays.
	Result  string     `json:"result"`
	Changed bool       `json:"changed"` // the SHA-256 in force differs from before
	Policy  PolicyInfo `json:"policy"`  // in force now
}

// handlePolicyReload does what SIGHUP does. A file that cannot be read or
// is not valid changes nothing and is a 422 whose error lists why.
func (a *Agent) handlePolicyReload(w http.ResponseWriter, r *http.Request) {
	before := a.policy.Current().SHA256()
	// The outcome is recorded even if the client leaves: a policy put in
	// force must have its policy.load entry.
	read, err := a.reloadPolicy(context.WithoutCancel(r.Context()))
	if err != nil {
		api.WriteError(w, http.StatusUnprocessableEntity, err)
		return
	}
	info, _ := a.policyInfo()
	res := ReloadResponse{Result: "applied", Changed: info.SHA256 != before, Policy: info}
	if !read {
		res.Result = "none"
	}
	api.WriteJSON(w, res)
}
