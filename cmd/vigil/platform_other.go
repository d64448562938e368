//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"
)

// linuxOnly is the Before hook of a command that needs the Linux kernel
// (BPF, cgroups, SO_MARK): elsewhere it stops the command with one
// sentence, before it opens anything. name is the command as typed after
// "vigil", e.g. "bench proxy".
func linuxOnly(name string) cli.BeforeFunc {
	return func(*cli.Context) error {
		return fmt.Errorf("%s runs on Linux only (this is %s)", name, runtime.GOOS)
	}
}
