package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/postern-dev/postern/client"
)

func recordingCommands() []subcommand {
	return []subcommand{
		{"list", "list recorded console sessions, newest first", apiRunner(runRecordingList)},
		{"export", "write a recording's asciicast v2 (.cast) file", apiRunner(runRecordingExport)},
	}
}

func runRecordingList(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("recording list",
		"recording list [--user USER] [--instance-id ID] [--since T] [--max N] [--output table|json]\n\n"+
			"Recordings come newest first. T is an RFC 3339 time, a date, or a duration meaning that\n"+
			"long ago (24h). A recording without an end is still being written, or its server stopped\n"+
			"first; ERROR says why a recording stopped early.",
		"postern recording list --user alice --since 24h\n"+
			"postern recording list --instance-id i-0123456789abcdef0")
	user := fs.String("user", "", "only sessions of this IAM `user`")
	instance := fs.String("instance-id", "", "only sessions on this `instance`")
	since := fs.String("since", "", "only sessions started at or after `T`")
	maxRecs := fs.Int("max", 50, "print at most `N` recordings")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *maxRecs < 1 {
		return usagef("recording list: --max must be at least 1")
	}
	in := &client.ListRecordingsInput{UserName: *user, InstanceID: *instance}
	if *since != "" {
		when, err := parseWhen("since", *since, time.Now())
		if err != nil {
			return err
		}
		in.StartTime = &client.EpochTime{Time: when}
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var recs []client.Recording
	for len(recs) < *maxRecs {
		in.MaxResults = min(1000, *maxRecs-len(recs))
		out, err := client.ListRecordings(ctx, cfg, in)
		if err != nil {
			return err
		}
		recs = append(recs, out.Recordings...)
		if out.NextToken == "" {
			break
		}
		in.NextToken = out.NextToken
	}
	if fs.json() {
		return m.printJSON(map[string]any{"Recordings": nonNil(recs)})
	}
	rows := make([][]string, len(recs))
	for i, r := range recs {
		ended := ""
		if r.EndTime != nil {
			ended = r.EndTime.UTC().Format(time.RFC3339)
		}
		rows[i] = []string{r.RecordingID, r.UserName, r.InstanceID, r.OSUser, r.StartTime.UTC().Format(time.RFC3339), ended,
			strconv.FormatInt(r.Size, 10), strconv.FormatInt(r.Events, 10), r.Error}
	}
	return m.table([]string{"RECORDING ID", "USER", "INSTANCE", "OS USER", "STARTED", "ENDED", "BYTES", "EVENTS", "ERROR"}, rows)
}

func runRecordingExport(ctx context.Context, m *Main, args []string) error {
	// The file is written as stored: there is no --output format.
	format := "table"
	fs := &clientFlags{output: &format, flagSet: m.newFlagSet("recording export",
		"recording export RECORDING_ID [--output-file FILE]\n\n"+
			"Writes the recording as an asciicast v2 file, as stored: play it with 'asciinema play'.\n"+
			"It holds everything typed in the session, passwords included: FILE is created with mode 0600.",
		"postern recording export rec-0123456789abcdef0 --output-file session.cast")}
	file := fs.String("output-file", "", "write to `FILE` instead of standard output")
	ids, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return usagef("recording export: want one RECORDING_ID")
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	if *file == "" {
		_, err := client.CopyRecording(ctx, cfg, ids[0], m.Stdout)
		return err
	}
	// A temporary file renamed into place: FILE is whole or untouched.
	f, err := os.CreateTemp(filepath.Dir(*file), "."+filepath.Base(*file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	n, err := client.CopyRecording(ctx, cfg, ids[0], f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), *file)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "Wrote %s (%d bytes).\n", *file, n)
	return nil
}
