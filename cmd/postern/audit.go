package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/keyfile"
)

func auditCommands() []subcommand {
	return []subcommand{
		{"lookup", "find audit events by name, user, resource, time or failure", apiRunner(runAuditLookup)},
		{"verify", "prove that no audit record was altered, removed, inserted or reordered", apiRunner(runAuditVerify)},
		{"export", "write audit events as JSON lines, oldest first", apiRunner(runAuditExport)},
	}
}

// parseWhen reads a point in time: RFC 3339 ("2026-03-01T12:00:00Z"), a
// date ("2026-03-01", midnight UTC), or a duration meaning that long ago
// ("90m", "24h").
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--%s %q: want an RFC 3339 time (2026-03-01T12:00:00Z), a date (2026-03-01) or a duration ago (1h, 30m)", flagName, s)
}

// trailBody is what the admin commands read from a CloudTrail record.
type trailBody struct {
	EventTime    time.Time `json:"eventTime"`
	EventName    string    `json:"eventName"`
	SourceIP     string    `json:"sourceIPAddress"`
	ErrorCode    string    `json:"errorCode"`
	UserIdentity struct {
		UserName    string `json:"userName"`
		AccessKeyID string `json:"accessKeyId"`
	} `json:"userIdentity"`
	Resources []struct {
		ARN string `json:"ARN"`
	} `json:"resources"`
}

var eventHeader = []string{"TIME", "EVENT", "USER", "SOURCE IP", "ERROR", "RESOURCES"}

func (b *trailBody) row() []string {
	res := make([]string, len(b.Resources))
	for i, r := range b.Resources {
		res[i] = r.ARN
	}
	return []string{b.EventTime.UTC().Format(time.RFC3339), b.EventName, b.UserIdentity.UserName, b.SourceIP, b.ErrorCode, strings.Join(res, ",")}
}

// lookupEvent is an event as "audit lookup --output json" prints it: the
// LookupEvents shape with a readable time and the full record as an
// object rather than as a string of JSON.
type lookupEvent struct {
	EventID         string `json:"EventId"`
	EventName       string
	ReadOnly        string
	AccessKeyID     string `json:"AccessKeyId,omitempty"`
	EventTime       time.Time
	EventSource     string
	Username        string `json:",omitempty"`
	Resources       []client.Resource
	CloudTrailEvent json.RawMessage
}

func runAuditLookup(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("audit lookup",
		"audit lookup [--event-name NAME] [--user USER] [--resource ARN] [--start T] [--end T] [--errors-only] [--max N] [--output table|json]\n\n"+
			"Events come newest first. T is an RFC 3339 time, a date, or a duration meaning that long\n"+
			"ago (1h). --output json prints {\"Events\":[…]} as CloudTrail's LookupEvents does, with\n"+
			"each CloudTrailEvent as a JSON object.",
		"postern audit lookup --user alice --start 24h\n"+
			"postern audit lookup --errors-only --event-name SendSSHPublicKey --max 20")
	eventName := fs.String("event-name", "", "only events with this `name`, such as CreateUser")
	user := fs.String("user", "", "only calls by this `user`")
	resource := fs.String("resource", "", "only events that touched this resource `ARN`")
	start := fs.String("start", "", "only events at or after `T`")
	end := fs.String("end", "", "only events at or before `T`")
	errorsOnly := fs.Bool("errors-only", false, "only calls that failed (denied, invalid, unauthenticated, …)")
	maxEvents := fs.Int("max", 50, "print at most `N` events")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	if *maxEvents < 1 {
		return usagef("audit lookup: --max must be at least 1")
	}
	in := &client.LookupEventsInput{ErrorsOnly: *errorsOnly}
	now := time.Now()
	for _, t := range []struct {
		name, val string
		dst       **client.EpochTime
	}{{"start", *start, &in.StartTime}, {"end", *end, &in.EndTime}} {
		if t.val == "" {
			continue
		}
		when, err := parseWhen(t.name, t.val, now)
		if err != nil {
			return err
		}
		*t.dst = &client.EpochTime{Time: when}
	}
	// CloudTrail takes one lookup attribute per call: the first given goes
	// to the server, the others are applied here.
	var attrs []client.LookupAttribute
	for _, a := range []struct{ key, val string }{{"EventName", *eventName}, {"Username", *user}, {"ResourceName", *resource}} {
		if a.val != "" {
			attrs = append(attrs, client.LookupAttribute{AttributeKey: a.key, AttributeValue: a.val})
		}
	}
	if len(attrs) > 0 {
		in.LookupAttributes = attrs[:1]
	}
	keep := func(ev *client.Event) bool {
		for _, a := range attrs[min(1, len(attrs)):] {
			switch a.AttributeKey {
			case "Username":
				if ev.Username != a.AttributeValue {
					return false
				}
			case "ResourceName":
				found := false
				for _, r := range ev.Resources {
					found = found || r.ResourceName == a.AttributeValue
				}
				if !found {
					return false
				}
			}
		}
		return true
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var events []client.Event
	for {
		in.MaxResults = min(1000, *maxEvents-len(events))
		if len(attrs) > 1 {
			in.MaxResults = 1000 // most of a page may be filtered out here
		}
		out, err := client.LookupEvents(ctx, cfg, in)
		if err != nil {
			return err
		}
		for i := range out.Events {
			if len(events) < *maxEvents && keep(&out.Events[i]) {
				events = append(events, out.Events[i])
			}
		}
		if out.NextToken == "" || len(events) >= *maxEvents {
			break
		}
		in.NextToken = out.NextToken
	}
	if fs.json() {
		list := make([]lookupEvent, len(events))
		for i, ev := range events {
			list[i] = lookupEvent{ev.EventID, ev.EventName, ev.ReadOnly, ev.AccessKeyID, ev.EventTime.UTC(), ev.EventSource, ev.Username, nonNil(ev.Resources), eventObject(ev.CloudTrailEvent)}
		}
		// Printed as is, not through printJSON: the records keep their
		// own members, nulls included, and their order.
		return writeIndented(m.Stdout, map[string]any{"Events": list})
	}
	rows := make([][]string, len(events))
	for i, ev := range events {
		var b trailBody
		_ = json.Unmarshal([]byte(ev.CloudTrailEvent), &b)
		// The lookup fields are authoritative; the body adds the rest.
		b.EventTime, b.EventName = ev.EventTime.Time, ev.EventName
		if ev.Username != "" {
			b.UserIdentity.UserName = ev.Username
		}
		rows[i] = b.row()
	}
	return m.table(eventHeader, rows)
}

// eventObject returns a CloudTrailEvent string as a JSON value: the object
// itself, or the string when it is not JSON.
func eventObject(s string) json.RawMessage {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}

func runAuditVerify(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("audit verify",
		"audit verify [--public-key FILE] [--output table|json]\n\n"+
			"Reads the whole hash-chained trail and the server's signed digests and checks that no\n"+
			"record was altered, removed, inserted or reordered. Without --public-key the digests\n"+
			"are checked against the key the server states, which proves the chain consistent but\n"+
			"not that the server is honest; pinning the key from the data directory (audit.pub),\n"+
			"kept apart from the server, is the stronger check. Exit status: 0 when the trail\n"+
			"verifies, 1 when it does not or on errors.",
		"postern audit verify --public-key /var/lib/postern/audit.pub")
	keyFile := fs.String("public-key", "", "the server's audit public key `file` (PEM, the data directory's audit.pub) to verify against")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	var pinned ed25519.PublicKey
	if *keyFile != "" {
		var err error
		if pinned, err = keyfile.LoadEd25519Public(*keyFile); err != nil {
			return err
		}
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	stated, keyID, err := client.GetAuditPublicKey(ctx, cfg)
	if err != nil {
		return err
	}
	pub := stated
	if pinned != nil {
		pub = pinned
		if !pinned.Equal(stated) {
			fmt.Fprintf(m.Stderr, "postern: warning: the server states a different audit key (%s) than %s; verifying against %s\n", keyID, *keyFile, *keyFile)
		}
	}
	// Digests are read before any record (see client.AuditSource).
	src, err := client.NewAuditSource(ctx, cfg)
	if err != nil {
		return err
	}
	report, err := audit.Verify(ctx, src, pub)
	if err != nil {
		return err
	}
	if fs.json() {
		if err := m.printJSON(struct {
			OK bool
			*audit.Report
		}{report.OK(), report}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(m.Stdout, strings.TrimRight(report.String(), "\n"))
		if pinned == nil {
			fmt.Fprintf(m.Stderr, "postern: note: verified against the key the server states (%s); pin it with --public-key DATA_DIR/audit.pub for a stronger check\n", keyID)
		}
	}
	if !report.OK() {
		return exitError{1}
	}
	return nil
}

func runAuditExport(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSetOutput("audit export",
		"audit export [--since T] [--output json|table]\n\n"+
			"Writes every audit event (one CloudTrail record per line, oldest first) as stored in the\n"+
			"hash-chained trail. T is an RFC 3339 time, a date, or a duration meaning that long ago.",
		"postern audit export --since 24h > audit-today.jsonl", "json")
	since := fs.String("since", "", "only events at or after `T`")
	if err := fs.parseNone(args); err != nil {
		return err
	}
	var from time.Time
	if *since != "" {
		var err error
		if from, err = parseWhen("since", *since, time.Now()); err != nil {
			return err
		}
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	var rows [][]string
	err = exportRecords(ctx, cfg, func(body []byte) error {
		var b trailBody
		if err := json.Unmarshal(body, &b); err == nil && !from.IsZero() && b.EventTime.Before(from) {
			return nil
		}
		if !fs.json() {
			rows = append(rows, b.row())
			return nil
		}
		var line bytes.Buffer
		if err := json.Compact(&line, body); err != nil {
			// Only a tampered record is not JSON; show it as it is
			// stored, as a JSON string, rather than hide it.
			enc, _ := json.Marshal(string(body))
			line.Reset()
			line.Write(enc)
		}
		line.WriteByte('\n')
		_, err := m.Stdout.Write(line.Bytes())
		return err
	})
	if err != nil {
		return err
	}
	if !fs.json() {
		return m.table(eventHeader, rows)
	}
	return nil
}

// exportRecords calls fn with the body of every record, oldest first, up
// to the end of the trail as it was when the last page was read.
func exportRecords(ctx context.Context, cfg aws.Config, fn func(body []byte) error) error {
	next := int64(1)
	for {
		page, err := client.ExportAuditRecords(ctx, cfg, next, 1000)
		if err != nil {
			return err
		}
		for i := range page.Records {
			rec, err := page.Records[i].Record()
			if err != nil {
				return err
			}
			if err := fn(rec.Body); err != nil {
				return err
			}
		}
		if page.NextSeq == 0 || len(page.Records) == 0 {
			return nil
		}
		next = page.NextSeq
	}
}
