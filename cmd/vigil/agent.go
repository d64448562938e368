package main

import (
	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/agent"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run the vigil daemon (zero config: key and log under /var/lib/vigil)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: agent.DefaultDataDir, Usage: "audit log directory", EnvVars: []string{"VIGIL_DATA_DIR"}},
			&cli.StringFlag{Name: "key", Usage: "signing key file or KMS URI (default: DATA_DIR/signing.key, generated on first start)", EnvVars: []string{"VIGIL_KEY"}},
			passwordFileFlag,
			&cli.StringFlag{Name: "host", Usage: "host name recorded in entries (default: hostname)", EnvVars: []string{"VIGIL_HOST"}},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("agent takes no arguments (got %q)", c.Args().First())
			}
			pw, err := readPassword(c)
			if err != nil {
				return err
			}
			a, err := agent.New(c.Context, agent.Config{
				DataDir:  c.String("data-dir"),
				KeyRef:   c.String("key"),
				Password: pw,
				Host:     c.String("host"),
				Logger:   logger(c),
			})
			if err != nil {
				return err
			}
			return a.Run(c.Context)
		},
	}
}
