package main

import "github.com/urfave/cli/v2"

// linuxOnly is the Before hook of a command that needs the Linux kernel
// (BPF, cgroups, SO_MARK); here there is nothing to refuse.
func linuxOnly(string) cli.BeforeFunc { return nil }
