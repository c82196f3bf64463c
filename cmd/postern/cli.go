package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/postern-dev/postern/client"
)

// This file holds what the admin commands share: the --output flag,
// interleaved flag parsing, table and JSON printing, and error cleanup.

// clientFlags is the flag set of a command that talks to a server.
type clientFlags struct {
	*flagSet
	output *string
}

// newClientFlagSet returns a flag set with --output. Every client command
// starts with it.
func (m *Main) newClientFlagSet(name, usage, example string) *clientFlags {
	return m.newClientFlagSetOutput(name, usage, example, "table")
}

// newClientFlagSetOutput is newClientFlagSet with another default output.
func (m *Main) newClientFlagSetOutput(name, usage, example, output string) *clientFlags {
	fs := m.newFlagSet(name, usage, example)
	out := fs.String("output", output, "output format: table or json")
	return &clientFlags{flagSet: fs, output: out}
}

// parseArgs parses flags wherever they appear among the positional
// arguments ("tag add i-1 --tag k=v" as well as "tag add --tag k=v i-1"),
// which the flag package alone does not do; everything after "--" is
// positional. It returns the positional arguments.
func (fs *clientFlags) parseArgs(args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.parse(args, true); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if *fs.output != "table" && *fs.output != "json" {
		return nil, usagef("%s: --output must be table or json, got %q", fs.Name(), *fs.output)
	}
	return pos, nil
}

// parseNone parses args for a command that takes no positional arguments.
func (fs *clientFlags) parseNone(args []string) error {
	pos, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), pos[0])
	}
	return nil
}

func (fs *clientFlags) json() bool { return *fs.output == "json" }

// connect loads the AWS configuration that points at the server.
func connect(ctx context.Context) (aws.Config, error) {
	return client.Load(ctx)
}

// defaultGCPercent sets this process's garbage-collection target (a
// long-running command's: the server's, the endpoint's), unless the
// operator chose one with GOGC.
func (m *Main) defaultGCPercent(percent int) {
	if m.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// keyValue splits "key=value" at the first "=". The key must not be empty;
// "key=" gives an empty value.
func keyValue(flagName, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", usagef("--%s %q: want key=value", flagName, s)
	}
	return k, v, nil
}

// apiRunner adapts a client command: it turns any error from the SDK or a
// server into one short line ("<Code>: <Message>") for Main.exit, leaving
// usage errors, exit statuses and --help alone.
func apiRunner(run func(context.Context, *Main, []string) error) func(context.Context, *Main, []string) error {
	return func(ctx context.Context, m *Main, args []string) error {
		err := run(ctx, m, args)
		var ue usageError
		var ee exitError
		if err == nil || errors.Is(err, flag.ErrHelp) || errors.As(err, &ue) || errors.As(err, &ee) {
			return err
		}
		return client.Clean(err)
	}
}

// table prints rows under a header as aligned columns. Empty cells print
// as "-" so that columns stay readable by eye and by awk.
func (m *Main) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			if c == "" {
				c = "-"
			}
			// A tab or newline in a value (a tag, say) would break the
			// columns.
			cells[i] = strings.Join(strings.Fields(c), " ")
			if cells[i] == "" {
				cells[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printJSON prints v as indented JSON without null members: the SDK's
// output types have many optional fields that Postern never sets, and the
// AWS CLI leaves absent members out too.
func (m *Main) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return err
	}
	return writeIndented(m.Stdout, pruneNulls(x))
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func pruneNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = pruneNulls(e)
		}
	case []any:
		for i, e := range x {
			x[i] = pruneNulls(e)
		}
	}
	return v
}

// nonNil makes a nil slice an empty one, so that an empty list prints as
// [] rather than disappearing.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// tagList formats tags as "k=v,k2=v2", sorted by key.
func tagList[T any](tags []T, kv func(T) (string, string)) string {
	parts := make([]string, 0, len(tags))
	for _, t := range tags {
		k, v := kv(t)
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// done prints a confirmation in table mode; JSON mode prints nothing for
// calls that return nothing, as the AWS CLI does.
func (m *Main) done(fs *clientFlags, format string, args ...any) {
	if !fs.json() {
		fmt.Fprintf(m.Stdout, format+"\n", args...)
	}
}

// eachID runs a command that acts on one or more ids ("vpc delete ID…"):
// it parses the ids, connects, and applies act to each in turn, reporting
// each success with doneFormat (one %s: the id). It stops at the first
// failure, naming the id.
func (m *Main) eachID(ctx context.Context, fs *clientFlags, args []string, verb, noun, doneFormat string, act func(context.Context, aws.Config, string) error) error {
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usagef("%s: want at least one %s", fs.Name(), noun)
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := act(ctx, cfg, id); err != nil {
			return fmt.Errorf("%s %s: %w", verb, id, client.Clean(err))
		}
		m.done(fs, doneFormat, id)
	}
	return nil
}
