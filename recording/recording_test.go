package recording

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/store/sqlite"
)

func openStore(t *testing.T) postern.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "postern.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// clock is a fake time that moves by step on every reading.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func newRecorder(t *testing.T) (*Recorder, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), step: 10 * time.Millisecond}
	r := New(filepath.Join(t.TempDir(), "data", DirName), openStore(t))
	r.Now = c.now
	return r, c
}

var meta = Meta{ID: "rec-0123456789abcdef0", User: "alice", UserARN: "arn:aws:iam::123456789012:user/alice",
	InstanceID: "i-0123456789abcdef0", OSUser: "ec2-user", SourceIP: "192.0.2.7", Cols: 120, Rows: 40}

func start(t *testing.T, r *Recorder, m Meta) *Session {
	t.Helper()
	s, err := r.Start(t.Context(), m)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type event struct {
	t    float64
	code string
	data string
}

// readCast parses a recording: every line must be JSON.
func readCast(t *testing.T, path string) (header map[string]any, events []event) {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if header == nil {
			if err := json.Unmarshal(sc.Bytes(), &header); err != nil {
				t.Fatalf("header %q: %v", sc.Text(), err)
			}
			continue
		}
		var raw []any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("event line %.80q: %v", sc.Text(), err)
		}
		if len(raw) != 3 {
			t.Fatalf("event %v has %d members, want 3", raw, len(raw))
		}
		at, ok1 := raw[0].(float64)
		code, ok2 := raw[1].(string)
		data, ok3 := raw[2].(string)
		if !ok1 || !ok2 || !ok3 {
			t.Fatalf("event %v is not [number, string, string]", raw)
		}
		events = append(events, event{at, code, data})
	}
	must(t, sc.Err())
	return header, events
}

// joined returns the data of the events with code, concatenated.
func joined(events []event, code string) string {
	var b strings.Builder
	for _, e := range events {
		if e.code == code {
			b.WriteString(e.data)
		}
	}
	return b.String()
}

func TestRecording(t *testing.T) {
	r, c := newRecorder(t)
	startedAt := c.t.Add(c.step) // Start reads the clock first
	s := start(t, r, meta)
	must(t, s.Output([]byte("$ ")))
	must(t, s.Input([]byte("echo \"$((6*7))\"\r")))
	must(t, s.Output([]byte("42\r\n\x1b[1;32mok\x1b[0m\t\\\n")))
	// A clock that steps back must not make times go back.
	c.step = -time.Second
	must(t, s.Resize(100, 30))
	c.step = 10 * time.Millisecond
	must(t, s.Output([]byte("$ ")))
	must(t, s.Close(t.Context()))
	if err := s.Output([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Output after Close = %v, want ErrClosed", err)
	}
	must(t, s.Close(t.Context())) // a second Close is harmless

	path, _ := r.Path(meta.ID)
	h, events := readCast(t, path)
	if h["version"] != 2.0 || h["width"] != 120.0 || h["height"] != 40.0 || h["timestamp"] != float64(startedAt.Unix()) {
		t.Errorf("header = %v", h)
	}
	if env, _ := h["env"].(map[string]any); env["TERM"] != "xterm-256color" {
		t.Errorf("header env = %v", h["env"])
	}
	if title, _ := h["title"].(string); !strings.Contains(title, "alice") || !strings.Contains(title, meta.InstanceID) {
		t.Errorf("header title = %q", title)
	}
	want := []event{{0, "o", "$ "}, {0, "i", "echo \"$((6*7))\"\r"}, {0, "o", "42\r\n\x1b[1;32mok\x1b[0m\t\\\n"}, {0, "r", "100x30"}, {0, "o", "$ "}}
	if len(events) != len(want) {
		t.Fatalf("events = %+v, want %+v", events, want)
	}
	last := 0.0
	for i, e := range events {
		if e.code != want[i].code || e.data != want[i].data {
			t.Errorf("event %d = %q %q, want %q %q", i, e.code, e.data, want[i].code, want[i].data)
		}
		if e.t < last {
			t.Errorf("event %d at %v comes before the one at %v", i, e.t, last)
		}
		last = e.t
	}

	got, err := r.Store.GetRecording(t.Context(), meta.ID)
	must(t, err)
	st, err := os.Stat(path)
	must(t, err)
	if got.Size != st.Size() || got.Events != int64(len(events)) || got.EndedAt.IsZero() || got.Error != "" ||
		got.UserName != "alice" || got.OSUser != "ec2-user" || got.Cols != 120 {
		t.Errorf("index = %+v; want size %d and %d events, ended", got, st.Size(), len(events))
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	if dst, err := os.Stat(r.Dir); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v, %v; want mode 0700", dst.Mode().Perm(), err)
	}
}

func TestStartDefaults(t *testing.T) {
	r, _ := newRecorder(t)
	s := start(t, r, Meta{User: "bob", InstanceID: "i-0123456789abcdef0"})
	if !strings.HasPrefix(s.ID(), "rec-") || !ValidID(s.ID()) {
		t.Errorf("new id %q", s.ID())
	}
	must(t, s.Close(t.Context()))
	path, _ := r.Path(s.ID())
	h, _ := readCast(t, path)
	if h["width"] != 80.0 || h["height"] != 24.0 {
		t.Errorf("default size %v×%v, want 80×24", h["width"], h["height"])
	}
	// An id is taken once, and the second Start leaves the first's file.
	m := meta
	m.ID = s.ID()
	if _, err := r.Start(t.Context(), m); err == nil {
		t.Error("Start with a used id succeeded")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the first recording's file: %v", err)
	}
}

func TestStartRefuses(t *testing.T) {
	r, _ := newRecorder(t)
	for _, id := range []string{"../escape", "a/b", ".hidden", "x.cast", strings.Repeat("a", 101)} {
		m := meta
		m.ID = id
		if _, err := r.Start(t.Context(), m); !postern.IsKind(err, postern.KindInvalid) {
			t.Errorf("Start(%q) = %v, want an invalid id", id, err)
		}
	}
	// A data dir that cannot hold the directory: no session, no index.
	blocker := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(blocker, nil, 0o600))
	r.Dir = filepath.Join(blocker, DirName)
	if _, err := r.Start(t.Context(), meta); err == nil {
		t.Fatal("Start under a file succeeded")
	}
	if _, err := r.Store.GetRecording(t.Context(), meta.ID); !postern.IsKind(err, postern.KindNotFound) {
		t.Errorf("a recording that failed to start is indexed: %v", err)
	}
}

func TestInvalidUTF8(t *testing.T) {
	r, _ := newRecorder(t)
	s := start(t, r, meta)
	// A sequence cut by a read is joined; bytes that are never UTF-8
	// become U+FFFD each; an unfinished sequence at the end too.
	for _, p := range []string{"caf\xc3", "\xa9 \xe2\x82", "\xac!", " bad\xff\xfe.", "\xf0\x9f", "\x98\x80", "\xe2\x82"} {
		must(t, s.Output([]byte(p)))
	}
	must(t, s.Input([]byte("\xc3")))
	must(t, s.Output([]byte("x"))) // streams carry separately; "\xe2\x82x" is not UTF-8
	must(t, s.Input([]byte("\xa9")))
	must(t, s.Close(t.Context()))
	path, _ := r.Path(meta.ID)
	_, events := readCast(t, path)
	if got, want := joined(events, "o"), "café €! bad\ufffd\ufffd.😀\ufffd\ufffdx"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
	if got := joined(events, "i"); got != "é" {
		t.Errorf("input = %q, want é", got)
	}
}

// TestSplitsAnywhere: however a byte stream is cut into writes, the
// recording plays back as the whole stream decodes.
func TestSplitsAnywhere(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "é", "€", "😀", "\xff", "\xe2\x82", "\xf0\x9f\x98", "\x80", "\n", "\x1b[0m", "\""}
	r, _ := newRecorder(t)
	for round := range 50 {
		var all []byte
		for range 200 {
			all = append(all, alphabet[rng.IntN(len(alphabet))]...)
		}
		m := meta
		m.ID = ""
		s := start(t, r, m)
		for rest := all; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(7))
			must(t, s.Output(rest[:n]))
			rest = rest[n:]
		}
		must(t, s.Close(t.Context()))
		path, _ := r.Path(s.ID())
		_, events := readCast(t, path)
		if got, want := joined(events, "o"), string([]rune(string(all))); got != want {
			t.Fatalf("round %d: output = %q, want %q", round, got, want)
		}
	}
}

func TestHugePaste(t *testing.T) {
	r, _ := newRecorder(t)
	s := start(t, r, meta)
	var paste bytes.Buffer
	for paste.Len() < 1<<20 {
		paste.WriteString("line with ünïcödé, \"quotes\", tabs\tand 😀\n")
	}
	must(t, s.Input(paste.Bytes()))
	must(t, s.Output(paste.Bytes()))
	must(t, s.Close(t.Context()))
	path, _ := r.Path(meta.ID)
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	longest := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		longest = max(longest, len(sc.Bytes()))
	}
	must(t, sc.Err())
	if longest > 4*maxEventData {
		t.Errorf("a line of %d bytes: a paste should be split into events", longest)
	}
	_, events := readCast(t, path)
	if joined(events, "i") != paste.String() || joined(events, "o") != paste.String() {
		t.Error("the paste does not play back as it was")
	}
}

// failingFile fails every write after the first limit bytes.
type failingFile struct {
	bytes.Buffer
	limit int
}

var errDiskFull = errors.New("no space left on device")

func (f *failingFile) Write(p []byte) (int, error) {
	if f.Len()+len(p) > f.limit {
		return 0, errDiskFull
	}
	return f.Buffer.Write(p)
}
func (f *failingFile) Sync() error  { return nil }
func (f *failingFile) Close() error { return nil }

func TestWriteErrorIsSticky(t *testing.T) {
	r, _ := newRecorder(t)
	r.Create = func(string) (File, error) { return &failingFile{limit: 1000}, nil }
	s := start(t, r, meta)
	// The buffer hides the failure until it spills: a big paste does.
	err := s.Input(bytes.Repeat([]byte("x"), 3*bufferSize))
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Input = %v, want the disk error", err)
	}
	for name, call := range map[string]func() error{
		"Output": func() error { return s.Output([]byte("more")) },
		"Input":  func() error { return s.Input([]byte("more")) },
		"Resize": func() error { return s.Resize(1, 1) },
		"Close":  func() error { return s.Close(t.Context()) },
	} {
		if err := call(); !errors.Is(err, errDiskFull) {
			t.Errorf("%s after the failure = %v, want the disk error", name, err)
		}
	}
	if !errors.Is(s.Err(), errDiskFull) {
		t.Errorf("Err = %v", s.Err())
	}
	got, err := r.Store.GetRecording(t.Context(), meta.ID)
	must(t, err)
	if got.EndedAt.IsZero() || !strings.Contains(got.Error, "no space left") {
		t.Errorf("index after a failure = %+v; want it ended with the error", got)
	}
}

// TestWriteErrorWithinASecond: a small write that fails is noticed by the
// next event a second later, not only when the buffer fills.
func TestWriteErrorWithinASecond(t *testing.T) {
	r, c := newRecorder(t)
	r.Create = func(string) (File, error) { return &failingFile{limit: 300}, nil }
	s := start(t, r, meta)
	must(t, s.Output([]byte(strings.Repeat("y", 400))))
	c.step = flushEvery
	if err := s.Output([]byte("z")); !errors.Is(err, errDiskFull) {
		t.Fatalf("Output a second later = %v, want the disk error", err)
	}
}

func TestConcurrent(t *testing.T) {
	r, _ := newRecorder(t)
	s := start(t, r, meta)
	var wg sync.WaitGroup
	for _, fn := range []func([]byte) error{s.Output, s.Input} {
		wg.Go(func() {
			for range 500 {
				if err := fn([]byte("é")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			if err := s.Resize(80+i, 24); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	must(t, s.Close(t.Context()))
	path, _ := r.Path(meta.ID)
	_, events := readCast(t, path)
	if joined(events, "o") != strings.Repeat("é", 500) || joined(events, "i") != strings.Repeat("é", 500) || len(events) != 1100 {
		t.Errorf("%d events; output and input not whole", len(events))
	}
}

// TestCloseAfterCancel: a session whose connection (and context) ended
// is still recorded as ended.
func TestCloseAfterCancel(t *testing.T) {
	r, _ := newRecorder(t)
	s := start(t, r, meta)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	must(t, s.Close(ctx))
	got, err := r.Store.GetRecording(t.Context(), meta.ID)
	must(t, err)
	if got.EndedAt.IsZero() {
		t.Errorf("a session closed with a cancelled context is not ended: %+v", got)
	}
}
