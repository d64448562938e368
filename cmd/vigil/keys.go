package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

func keysCommand() *cli.Command {
	types := make([]string, len(keys.Types))
	for i, t := range keys.Types {
		types[i] = string(t)
	}
	return &cli.Command{
		Name:  "keys",
		Usage: "manage signing keys",
		Subcommands: []*cli.Command{{
			Name:  "generate",
			Usage: "generate a signing key pair: DIR/signing.key (0600) and DIR/signing.pub",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "out-dir", Required: true, Usage: "directory to write the key pair to"},
				&cli.StringFlag{Name: "type", Value: string(keys.ECDSAP256), Usage: "key type: " + strings.Join(types, ", ")},
				passwordFileFlag,
				&cli.BoolFlag{Name: "no-password", Usage: "store the private key unencrypted (protect it by file mode only)"},
			},
			Action: func(c *cli.Context) error {
				if c.Args().Len() > 0 {
					return usagef("keys generate takes no arguments (got %q)", c.Args().First())
				}
				pw, err := readPassword(c)
				if err != nil {
					return err
				}
				switch {
				case pw != nil && c.Bool("no-password"):
					return usagef("--no-password conflicts with the password given (VIGIL_KEY_PASSWORD or --password-file)")
				case pw == nil && !c.Bool("no-password"):
					return usagef("no password for the private key: set VIGIL_KEY_PASSWORD, pass --password-file, or pass --no-password to store it unencrypted")
				}
				p, err := keys.WritePair(c.String("out-dir"), keys.Type(c.String("type")), pw)
				if err != nil {
					return err
				}
				state := "encrypted"
				if pw == nil {
					state = "unencrypted"
				}
				fmt.Fprintf(c.App.Writer, "private key: %s (%s, mode 0600)\npublic key:  %s\ntype:        %s\nfingerprint: %s\n",
					p.PrivatePath, state, p.PublicPath, p.Type, p.ID)
				return nil
			},
		}},
	}
}
