package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes are part of vigil's interface.
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and found a problem (e.g. verify failed)
	exitUsage    = 2 // bad flags or arguments
	exitInternal = 3 // could not run (I/O, permissions, bad key)
)

// usageError marks an error caused by how vigil was invoked.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// failedError marks a command that ran to the end and reports a failure
// that it has already printed.
type failedError struct{ msg string }

func (e failedError) Error() string { return e.msg }

// newApp builds the CLI with its streams passed in, so tests run commands
// in-process.
func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "vigil",
		Usage:                "node-level access audit: who talked to what, signed and tamper-evident",
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideVersion:          true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"VIGIL_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"VIGIL_LOG_FORMAT"}},
		},
		Commands: []*cli.Command{
			agentCommand(),
			keysCommand(),
			eventsCommand(),
			policyCommand(),
			verifyCommand(),
			statusCommand(),
			archiveCommand(),
			benchCommand(),
			versionCommand(),
		},
		// Exit codes are chosen by run, not inside the library.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
	}
	return app
}

// run executes the app and maps its error to an exit code, printing one
// clear line for it.
func run(ctx context.Context, app *cli.App, args []string) int {
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ue usageError
	var fe failedError
	switch {
	case errors.As(err, &fe):
		return exitFailure
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "flag provided but not defined"), strings.Contains(err.Error(), "Required flag"):
		fmt.Fprintf(app.ErrWriter, "vigil: %v (see vigil --help)\n", err)
		return exitUsage
	default:
		fmt.Fprintf(app.ErrWriter, "vigil: %v\n", err)
		return exitInternal
	}
}

// logger builds the process logger from the global flags.
func logger(c *cli.Context) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(c.App.ErrWriter, opts)
	if c.String("log-format") == "json" {
		h = slog.NewJSONHandler(c.App.ErrWriter, opts)
	}
	return slog.New(h)
}

// readPassword returns the key password from --password-file or
// VIGIL_KEY_PASSWORD, or nil when neither is set.
func readPassword(c *cli.Context) ([]byte, error) {
	if f := c.String("password-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return nil, usagef("password file %s is empty", f)
		}
		return []byte(pw), nil
	}
	if pw, ok := os.LookupEnv("VIGIL_KEY_PASSWORD"); ok && pw != "" {
		return []byte(pw), nil
	}
	return nil, nil
}

var passwordFileFlag = &cli.StringFlag{
	Name:    "password-file",
	Usage:   "file holding the signing key's password (else VIGIL_KEY_PASSWORD)",
	EnvVars: []string{"VIGIL_PASSWORD_FILE"},
}
