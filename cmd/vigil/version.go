package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print version, commit and Go version",
		Flags: []cli.Flag{outputFlag("text")},
		Action: func(c *cli.Context) error {
			v := version.Get()
			if c.String("output") == "json" {
				return json.NewEncoder(c.App.Writer).Encode(v)
			}
			fmt.Fprintf(c.App.Writer, "vigil %s\ncommit %s\n%s %s\n", v.Version, v.Commit, v.GoVersion, v.Platform)
			return nil
		},
	}
}

func outputFlag(def string) *cli.StringFlag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: def, Usage: "output format: text or json"}
}
