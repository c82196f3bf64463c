package api

import (
	"io"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/recording"
)

// MaxRecordingChunk is the most of a recording's file that one
// GetRecordingContent call returns.
const MaxRecordingChunk = 512 << 10

// Recording is a recording's index entry as the API returns it.
type Recording struct {
	RecordingID string `json:"RecordingId"`
	UserName    string
	UserArn     string
	InstanceID  string `json:"InstanceId"`
	OSUser      string `json:"OsUser"`
	SourceIP    string `json:"SourceIp"`
	Cols, Rows  int
	StartTime   epochTime
	EndTime     *epochTime `json:",omitempty"` // absent while recording
	Size        int64
	Events      int64
	Error       string `json:",omitempty"`
}

func toRecording(r *postern.Recording) Recording {
	out := Recording{
		RecordingID: r.ID, UserName: r.UserName, UserArn: r.UserARN, InstanceID: r.InstanceID, OSUser: r.OSUser,
		SourceIP: r.SourceIP, Cols: r.Cols, Rows: r.Rows, StartTime: epochTime{r.StartedAt},
		Size: r.Size, Events: r.Events, Error: r.Error,
	}
	if !r.EndedAt.IsZero() {
		out.EndTime = &epochTime{r.EndedAt}
	}
	return out
}

// recordingARN names a recording in policies and the audit trail.
func (c *call) recordingARN(id string) string {
	cfg := c.s.auth.Config()
	return "arn:aws:postern:" + cfg.Region + ":" + cfg.Account + ":recording/" + id
}

func listRecordings(c *call) (any, error) {
	var req struct {
		UserName   string
		InstanceID string     `json:"InstanceId"`
		StartTime  *epochTime // started at or after
		MaxResults int
		NextToken  string
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if req.MaxResults < 0 || req.MaxResults > 1000 {
		return nil, postern.CodedErrorf(postern.KindInvalid, "ValidationException", "MaxResults must be between 1 and 1000")
	}
	f := postern.RecordingFilter{User: req.UserName, InstanceID: req.InstanceID, Limit: req.MaxResults, Token: req.NextToken}
	if req.StartTime != nil {
		f.Since = req.StartTime.Time
	}
	if err := c.authorize("postern:ListRecordings", c.recordingARN("*"), nil); err != nil {
		return nil, err
	}
	rs, next, err := c.s.auth.Store().ListRecordings(c.ctx, f)
	if postern.IsKind(err, postern.KindInvalid) && f.Token != "" {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidNextTokenException", "NextToken is not valid")
	}
	if err != nil {
		return nil, err
	}
	out := struct {
		Recordings []Recording
		NextToken  string `json:",omitempty"`
	}{Recordings: make([]Recording, 0, len(rs)), NextToken: next}
	for i := range rs {
		out.Recordings = append(out.Recordings, toRecording(&rs[i]))
	}
	return out, nil
}

// recordingParam reads and checks RecordingId, authorizes action on the
// recording and returns its index entry.
func (c *call) recordingParam(action string, id string) (*postern.Recording, error) {
	if !recording.ValidID(id) {
		return nil, postern.CodedErrorf(postern.KindInvalid, "ValidationException", "RecordingId %q is not a recording id", id)
	}
	if err := c.authorize(action, c.recordingARN(id), nil); err != nil {
		return nil, err
	}
	return c.s.auth.Store().GetRecording(c.ctx, id)
}

func getRecording(c *call) (any, error) {
	var req struct {
		RecordingID string `json:"RecordingId"`
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	r, err := c.recordingParam("postern:GetRecording", req.RecordingID)
	if err != nil {
		return nil, err
	}
	return struct{ Recording Recording }{toRecording(r)}, nil
}

// getRecordingContent returns a piece of a recording's .cast file, base64
// in JSON, from Offset: at most MaxBytes (default and limit
// MaxRecordingChunk). NextOffset is absent at the end of the file as it is
// now; a recording in progress grows.
func getRecordingContent(c *call) (any, error) {
	var req struct {
		RecordingID string `json:"RecordingId"`
		Offset      int64
		MaxBytes    int
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if req.Offset < 0 || req.MaxBytes < 0 {
		return nil, postern.CodedErrorf(postern.KindInvalid, "ValidationException", "Offset and MaxBytes may not be negative")
	}
	if req.MaxBytes == 0 || req.MaxBytes > MaxRecordingChunk {
		req.MaxBytes = MaxRecordingChunk
	}
	r, err := c.recordingParam("postern:GetRecording", req.RecordingID)
	if err != nil {
		return nil, err
	}
	if c.s.cfg.Recordings == nil {
		return nil, postern.Errorf(postern.KindInternal, "this server keeps no recordings")
	}
	f, err := c.s.cfg.Recordings.Open(r.ID)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte more than asked for tells whether more follows.
	buf := make([]byte, req.MaxBytes+1)
	n, err := f.ReadAt(buf, req.Offset)
	if err != nil && err != io.EOF {
		return nil, postern.Internal(err, "cannot read recording %s", r.ID)
	}
	out := struct {
		Data       []byte
		Offset     int64
		NextOffset int64 `json:",omitempty"`
	}{Data: buf[:min(n, req.MaxBytes)], Offset: req.Offset}
	if n > req.MaxBytes {
		out.NextOffset = req.Offset + int64(req.MaxBytes)
	}
	c.response = map[string]any{"recordingId": r.ID, "offset": req.Offset, "bytes": len(out.Data)}
	return out, nil
}
