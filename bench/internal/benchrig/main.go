package benchrig

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Main runs a benchmark program: run with the command line, or, when the
// first argument names one of children, that child role (the program
// re-executes itself for them). A failure is printed under name and
// exits 1.
func Main(name string, run func(args []string) error, children map[string]func(args []string) error) {
	if len(os.Args) > 1 {
		if child, ok := children[os.Args[1]]; ok {
			if err := child(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// NewFlagSet is a flag set that returns its errors.
func NewFlagSet(name string) *flag.FlagSet {
	return flag.NewFlagSet(name, flag.ContinueOnError)
}

// SignalContext ends on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// RunContext is a whole run's context: it ends on SIGINT or SIGTERM and,
// unless bound is zero (-hold waits for Ctrl-C), after bound, so that the
// run is bounded as well as each of its loops.
func RunContext(bound time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := SignalContext()
	if bound <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	return ctx, func() { cancel(); stop() }
}
