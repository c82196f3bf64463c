package client

import (
	"context"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Recording is a console session recording's index entry.
type Recording struct {
	RecordingID string `json:"RecordingId"`
	UserName    string
	UserArn     string
	InstanceID  string `json:"InstanceId"`
	OSUser      string `json:"OsUser"`
	SourceIP    string `json:"SourceIp"`
	Cols, Rows  int
	StartTime   EpochTime
	EndTime     *EpochTime `json:",omitempty"` // nil while recording
	Size        int64
	Events      int64
	Error       string `json:",omitempty"`
}

// ListRecordingsInput selects recordings; zero fields do not filter.
type ListRecordingsInput struct {
	UserName   string     `json:",omitempty"`
	InstanceID string     `json:"InstanceId,omitempty"`
	StartTime  *EpochTime `json:",omitempty"` // started at or after
	MaxResults int        `json:",omitempty"`
	NextToken  string     `json:",omitempty"`
}

// ListRecordingsOutput is one page of recordings, newest first.
type ListRecordingsOutput struct {
	Recordings []Recording
	NextToken  string
}

// ListRecordings returns one page of recordings.
func ListRecordings(ctx context.Context, cfg aws.Config, in *ListRecordingsInput) (*ListRecordingsOutput, error) {
	var out ListRecordingsOutput
	if err := CallJSON(ctx, cfg, PosternTarget, PosternSigningName, "ListRecordings", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetRecording returns one recording's index entry.
func GetRecording(ctx context.Context, cfg aws.Config, id string) (*Recording, error) {
	var out struct{ Recording Recording }
	if err := CallJSON(ctx, cfg, PosternTarget, PosternSigningName, "GetRecording", map[string]string{"RecordingId": id}, &out); err != nil {
		return nil, err
	}
	return &out.Recording, nil
}

// CopyRecording writes a recording's .cast file to w, a piece per call,
// and returns the number of bytes written.
func CopyRecording(ctx context.Context, cfg aws.Config, id string, w io.Writer) (int64, error) {
	var offset int64
	for {
		in := struct {
			RecordingID string `json:"RecordingId"`
			Offset      int64
		}{id, offset}
		var out struct {
			Data       []byte
			NextOffset int64
		}
		if err := CallJSON(ctx, cfg, PosternTarget, PosternSigningName, "GetRecordingContent", in, &out); err != nil {
			return offset, err
		}
		if _, err := w.Write(out.Data); err != nil {
			return offset, err
		}
		offset += int64(len(out.Data))
		if out.NextOffset == 0 {
			return offset, nil
		}
	}
}
