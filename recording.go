package postern

import "time"

// Recording indexes one recorded console terminal session; the session
// itself is an asciicast v2 file that package recording writes.
type Recording struct {
	ID         string
	UserName   string // who signed in to the console
	UserARN    string
	InstanceID string
	OSUser     string // the login name on the instance
	SourceIP   string
	Cols, Rows int // the terminal's size at the start
	StartedAt  time.Time
	// The rest is set by FinishRecording; EndedAt is zero while the
	// session is still being recorded (or its server stopped first).
	EndedAt time.Time
	Size    int64  // bytes in the .cast file
	Events  int64  // output, input and resize events
	Error   string // why recording stopped early, "" when it did not
}

// RecordingEnd is what FinishRecording records.
type RecordingEnd struct {
	EndedAt time.Time
	Size    int64
	Events  int64
	Error   string
}

// RecordingFilter selects recordings for ListRecordings. Zero fields do
// not filter. Token continues a listing where the NextToken of the
// previous page left it.
type RecordingFilter struct {
	User       string
	InstanceID string
	Since      time.Time // started at or after
	Limit      int       // 0: store default (50)
	Token      string
}
