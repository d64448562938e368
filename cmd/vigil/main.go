// Command vigil is the node access audit agent and its operator CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// Signing allocates heavily and the live heap is small, so the default
	// GC target collects far too often: 400 was worth ~20% more signed
	// entries/s in `vigil bench audit` (docs/PERFORMANCE.md). GOGC still wins.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, newApp(os.Stdin, os.Stdout, os.Stderr), os.Args)
	stop()
	os.Exit(code)
}
