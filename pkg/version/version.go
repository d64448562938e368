// Package version reports the build's version, commit and Go toolchain.
package version

import "runtime"

// Version is the release version, set at link time with -ldflags -X.
var Version = "dev"

// Commit is the source commit, set at link time with -ldflags -X.
var Commit = "unknown"

// Info describes one build of vigil.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the running binary's build information.
func Get() Info {
	return Info{
		Version:   Version,
		Commit:    Commit,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
}
