//go:build !linux

package proxybench

import "errors"

// setMark fails outside Linux, which has no SO_MARK (and no interception
// for a mark to bypass).
func setMark(uintptr, uint32) error { return errors.ErrUnsupported }
