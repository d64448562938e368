//go:build !linux

package agent

// missingPrograms has nothing to check where nothing can be attached.
func missingPrograms(string) ([]string, error) { return nil, nil }
