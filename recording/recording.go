// Package recording writes console terminal sessions as asciicast v2
// files (https://docs.asciinema.org/manual/asciicast/v2/) under the data
// directory and indexes them in the store.
//
// A file is a JSON header line, then one JSON array per event:
// [seconds since the start, "o" (output) | "i" (input) | "r" (resize),
// data]. Data is a JSON string, so bytes that are not UTF-8 cannot be
// stored as they are: a sequence cut in two by a read is carried over to
// the next write of the same stream, and bytes that can never be UTF-8
// become U+FFFD, as a terminal would show them.
//
// A recording that cannot be written must end its session: every error
// is sticky, and every later call returns it.
package recording

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/postern-dev/postern"

	"github.com/postern-dev/postern/valid"
)

// DirName is the recordings directory inside the server's data directory.
const DirName = "recordings"

// Ext ends every recording's file name.
const Ext = ".cast"

const (
	// maxEventData is the most data in one event line: a bigger write
	// becomes several events with the same time, so that lines stay a
	// size that line-oriented tools read.
	maxEventData = 32 << 10
	bufferSize   = 64 << 10
	// flushEvery bounds how long events wait in the buffer, so that a
	// file system that fails is noticed while the session goes on.
	flushEvery = time.Second
)

// ErrClosed is returned by a Session's methods after Close.
var ErrClosed = errors.New("recording: session is closed")

// Meta describes a session being recorded.
type Meta struct {
	ID                                          string // "" for a new rec-… id
	User, UserARN, InstanceID, OSUser, SourceIP string
	Cols, Rows                                  int       // 0: 80×24
	Started                                     time.Time // zero: now
}

// File is what a Session writes; *os.File is one.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// Recorder writes one asciicast v2 file under Dir per session and indexes
// it in Store.
type Recorder struct {
	Dir   string
	Store postern.Store
	Now   func() time.Time
	// Create creates a new file for writing; nil creates it with mode
	// 0600 in Dir (made 0700 when missing). Tests inject failures here.
	Create func(path string) (File, error)
}

// New returns a Recorder that writes under dir.
func New(dir string, st postern.Store) *Recorder {
	return &Recorder{Dir: dir, Store: st, Now: time.Now}
}

// ValidID reports whether id can name a recording (and so a file).
// That is a letter or digit, then up to 99 letters, digits, _ and -.
func ValidID(id string) bool {
	return len(id) >= 1 && len(id) <= 100 && valid.Alnum(id[0]) &&
		valid.All(id[1:], func(c byte) bool { return valid.Alnum(c) || c == '_' || c == '-' })
}

// Path returns the file of the recording with id.
func (r *Recorder) Path(id string) (string, error) {
	if !ValidID(id) {
		return "", postern.Invalidf("%q is not a recording id", id)
	}
	return filepath.Join(r.Dir, id+Ext), nil
}

// Open opens a recording's file for reading.
func (r *Recorder) Open(id string) (*os.File, error) {
	p, err := r.Path(id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, postern.NotFoundf("recording %s has no file", id)
	}
	if err != nil {
		return nil, postern.Internal(err, "cannot open recording %s", id)
	}
	return f, nil
}

func (r *Recorder) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

func (r *Recorder) create(path string) (File, error) {
	if r.Create != nil {
		return r.Create(path)
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

type header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Env       map[string]string `json:"env"`
	Title     string            `json:"title"`
}

// Start creates the file, writes the asciicast header and indexes the
// recording. It returns an error, and leaves no file, when any of that
// fails: the session must not start unrecorded.
func (r *Recorder) Start(ctx context.Context, m Meta) (*Session, error) {
	if m.ID == "" {
		m.ID = newID()
	}
	path, err := r.Path(m.ID)
	if err != nil {
		return nil, err
	}
	if m.Cols <= 0 || m.Rows <= 0 {
		m.Cols, m.Rows = 80, 24
	}
	if m.Started.IsZero() {
		m.Started = r.now()
	}
	f, err := r.create(path)
	if err != nil {
		return nil, postern.Internal(err, "cannot create recording %s", m.ID)
	}
	s := &Session{r: r, id: m.ID, path: path, f: f, started: m.Started, lastFlush: m.Started}
	s.cw = &countingWriter{w: f}
	s.w = bufio.NewWriterSize(s.cw, bufferSize)
	fail := func(err error) (*Session, error) {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	title := m.User + " → " + m.OSUser + "@" + m.InstanceID
	hb, err := json.Marshal(header{2, m.Cols, m.Rows, m.Started.Unix(), map[string]string{"TERM": "xterm-256color"}, title})
	if err != nil {
		return fail(err)
	}
	s.w.Write(hb)
	s.w.WriteByte('\n')
	// The header reaches the disk before the session starts.
	if err := s.w.Flush(); err != nil {
		return fail(postern.Internal(err, "cannot write recording %s", m.ID))
	}
	rec := &postern.Recording{
		ID: m.ID, UserName: m.User, UserARN: m.UserARN, InstanceID: m.InstanceID, OSUser: m.OSUser,
		SourceIP: m.SourceIP, Cols: m.Cols, Rows: m.Rows, StartedAt: m.Started,
	}
	if err := r.Store.CreateRecording(ctx, rec); err != nil {
		return fail(err)
	}
	return s, nil
}

// Session is one recording being written. Its methods are safe for
// concurrent use (output and input come from different goroutines).
type Session struct {
	r       *Recorder
	id      string
	path    string
	f       File
	started time.Time

	mu        sync.Mutex
	cw        *countingWriter
	w         *bufio.Writer
	carry     [2][]byte // an unfinished UTF-8 sequence of output, input
	last      float64   // time of the newest event, so that times never go back
	lastFlush time.Time
	events    int64
	err       error // sticky
	closed    bool
}

// ID returns the recording's id.
func (s *Session) ID() string { return s.id }

// Err returns the error that stopped the recording, if any.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

const (
	streamOutput = iota
	streamInput
)

// Output records bytes the terminal showed.
func (s *Session) Output(p []byte) error { return s.data(streamOutput, "o", p) }

// Input records bytes the user typed or pasted.
func (s *Session) Input(p []byte) error { return s.data(streamInput, "i", p) }

// Resize records a new terminal size, as "COLSxROWS".
func (s *Session) Resize(cols, rows int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	return s.afterWrite(s.event("r", []byte(strconv.Itoa(cols)+"x"+strconv.Itoa(rows))))
}

func (s *Session) data(stream int, code string, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	data := p
	if c := s.carry[stream]; len(c) > 0 {
		data = append(c, p...)
		s.carry[stream] = nil
	}
	if n := incompleteTail(data); n > 0 {
		s.carry[stream] = append([]byte(nil), data[len(data)-n:]...)
		data = data[:len(data)-n]
	}
	var err error
	for len(data) > 0 && err == nil {
		n := chunk(data, maxEventData)
		err = s.event(code, data[:n])
		data = data[n:]
	}
	return s.afterWrite(err)
}

func (s *Session) usable() error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return ErrClosed
	}
	return nil
}

// event writes one event line to the buffer. bufio.Writer keeps the
// first write error and returns it from every later write, so the last
// write's error is the event's.
func (s *Session) event(code string, data []byte) error {
	t := max(s.r.now().Sub(s.started).Seconds(), s.last)
	s.last = t
	var pre [48]byte
	b := append(pre[:0], '[')
	b = strconv.AppendFloat(b, t, 'f', 6, 64)
	b = append(b, `, "`...)
	b = append(b, code...)
	b = append(b, `", `...)
	s.w.Write(b)
	writeJSONString(s.w, data)
	_, err := s.w.WriteString("]\n")
	s.events++
	return err
}

// afterWrite flushes when events have waited long enough and makes any
// write error sticky.
func (s *Session) afterWrite(err error) error {
	if now := s.r.now(); err == nil && now.Sub(s.lastFlush) >= flushEvery {
		s.lastFlush = now
		err = s.w.Flush()
	}
	return s.check(err)
}

// check makes err, if any, the session's sticky error.
func (s *Session) check(err error) error {
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("recording %s: %w", s.id, err)
	}
	return s.err
}

// Close writes what is pending (an unfinished UTF-8 sequence as U+FFFD),
// syncs and closes the file and records the end in the index, with the
// error that stopped the recording if one did. It returns that error, or
// the first error of its own. Closing again returns nil.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.err == nil {
		for stream, code := range []string{"o", "i"} {
			if c := s.carry[stream]; len(c) > 0 {
				s.check(s.event(code, c)) // writeJSONString makes it U+FFFD
				s.carry[stream] = nil
			}
		}
		if s.err == nil {
			s.check(s.w.Flush())
		}
		if s.err == nil {
			s.check(s.f.Sync())
		}
	}
	s.check(s.f.Close())
	end := postern.RecordingEnd{EndedAt: s.r.now(), Size: s.cw.n, Events: s.events}
	if s.err != nil {
		end.Error = s.err.Error()
	}
	// The end is recorded even when the session's own context is done:
	// a terminal usually closes because its connection did.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.r.Store.FinishRecording(ctx, s.id, end); err != nil && s.err == nil {
		return err
	}
	return s.err
}

// countingWriter counts the bytes that reached the file.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
