package api

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/keyfile"
)

const (
	cloudTrailTarget = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"
	posternTarget    = "Postern_20261101"

	ec2InstanceConnectTarget = "AWSEC2InstanceConnectService"
)

// trailService serves CloudTrail's LookupEvents, so that
// `aws cloudtrail lookup-events` reads Postern's trail.
func (s *Server) trailService() *service {
	return &service{
		key: cloudTrailTarget, proto: protoJSON, signingName: "cloudtrail",
		eventSource: "cloudtrail.amazonaws.com",
		ops: map[string]*operation{
			"LookupEvents": {readOnly: true, handle: lookupEvents},
		},
	}
}

// posternService serves what AWS has no API for: the raw, hash-chained
// trail and its signed digests, for `postern audit verify` and `export`,
// and the console's session recordings.
func (s *Server) posternService() *service {
	return &service{
		key: posternTarget, proto: protoJSON, signingName: "postern",
		eventSource: "postern.amazonaws.com",
		ops: map[string]*operation{
			"ExportAuditRecords":     {readOnly: true, handle: exportAuditRecords},
			"ListAuditDigests":       {readOnly: true, handle: listAuditDigests},
			"GetAuditPublicKey":      {readOnly: true, handle: getAuditPublicKey},
			"GetInstanceConnectInfo": {readOnly: true, handle: getInstanceConnectInfo},
			"ListRecordings":         {readOnly: true, handle: listRecordings},
			"GetRecording":           {readOnly: true, handle: getRecording},
			"GetRecordingContent":    {readOnly: true, handle: getRecordingContent},
		},
	}
}

// decodeJSON decodes the request body into v, refusing unknown fields.
func (c *call) decodeJSON(v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := jsonProblem(err)
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			msg = strings.TrimPrefix(err.Error(), "json: ")
		}
		return postern.CodedErrorf(postern.KindInvalid, "SerializationException", "Cannot decode the request: %s", msg)
	}
	return nil
}

// epochTime is an AWS JSON timestamp: seconds since the epoch, fractional.
type epochTime struct{ time.Time }

func (t epochTime) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)), nil
}

func (t *epochTime) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		var s string
		if json.Unmarshal(b, &s) != nil {
			return err
		}
		tt, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return err
		}
		t.Time = tt
		return nil
	}
	t.Time = time.UnixMilli(int64(f * 1000)).UTC()
	return nil
}

type lookupEventsRequest struct {
	LookupAttributes []struct {
		AttributeKey   string
		AttributeValue string
	}
	StartTime     *epochTime
	EndTime       *epochTime
	MaxResults    int
	NextToken     string
	EventCategory string
	// ErrorsOnly is a Postern extension: only calls that failed.
	ErrorsOnly bool
}

type trailResource struct {
	ResourceType string
	ResourceName string
}

type trailEvent struct {
	EventID         string `json:"EventId"`
	EventName       string
	ReadOnly        string
	AccessKeyID     string `json:"AccessKeyId,omitempty"`
	EventTime       epochTime
	EventSource     string
	Username        string `json:",omitempty"`
	Resources       []trailResource
	CloudTrailEvent string
}

func lookupEvents(c *call) (any, error) {
	var req lookupEventsRequest
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	q := postern.AuditQuery{ErrorsOnly: req.ErrorsOnly, Limit: req.MaxResults}
	if req.MaxResults < 0 || req.MaxResults > 1000 {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidMaxResultsException", "MaxResults must be between 1 and 1000")
	}
	if len(req.LookupAttributes) > 1 {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidLookupAttributesException", "Only one lookup attribute is allowed")
	}
	for _, a := range req.LookupAttributes {
		switch a.AttributeKey {
		case "EventName":
			q.EventName = a.AttributeValue
		case "Username":
			q.UserName = a.AttributeValue
		case "ResourceName":
			q.Resource = a.AttributeValue
		default:
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidLookupAttributesException", "Lookup attribute %q is not supported; use EventName, Username or ResourceName", a.AttributeKey)
		}
	}
	if req.StartTime != nil {
		q.Start = req.StartTime.Time
	}
	if req.EndTime != nil {
		q.End = req.EndTime.Time
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidTimeRangeException", "EndTime is before StartTime")
	}
	if req.NextToken != "" {
		n, err := strconv.ParseInt(req.NextToken, 10, 64)
		if err != nil || n < 1 {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidNextTokenException", "NextToken is not valid")
		}
		q.BeforeSeq = n
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	if err := c.authorize("cloudtrail:LookupEvents", "*", nil); err != nil {
		return nil, err
	}
	recs, err := c.s.auth.Store().LookupAudit(c.ctx, q)
	if err != nil {
		return nil, err
	}
	out := struct {
		Events    []trailEvent
		NextToken string `json:",omitempty"`
	}{Events: []trailEvent{}}
	for _, r := range recs {
		var ev struct {
			ReadOnly bool `json:"readOnly"`
		}
		_ = json.Unmarshal(r.Body, &ev)
		te := trailEvent{
			EventID: r.EventID, EventName: r.EventName, ReadOnly: strconv.FormatBool(ev.ReadOnly),
			AccessKeyID: r.AccessKeyID, EventTime: epochTime{r.EventTime}, EventSource: r.EventSource,
			Username: r.UserName, Resources: []trailResource{}, CloudTrailEvent: string(r.Body),
		}
		for _, arn := range r.Resources {
			te.Resources = append(te.Resources, trailResource{ResourceType: resourceType(arn), ResourceName: arn})
		}
		out.Events = append(out.Events, te)
	}
	if len(recs) == q.Limit && len(recs) > 0 {
		out.NextToken = strconv.FormatInt(recs[len(recs)-1].Seq, 10)
	}
	return out, nil
}

// ExportedRecord is one audit record as ExportAuditRecords returns it,
// with the lookup columns and resource index the store holds for it, so
// that a verifier can hold them to the body.
type ExportedRecord struct {
	Seq      int64
	EventID  string `json:"EventId"`
	Body     json.RawMessage
	PrevHash string         // hex
	Hash     string         // hex
	Stored   *StoredColumns `json:",omitempty"`
}

// StoredColumns are an audit record's lookup columns as stored (see
// postern.AuditRecord.Stored).
type StoredColumns struct {
	EventTime   time.Time
	EventName   string
	EventSource string
	UserName    string
	AccessKeyID string `json:"AccessKeyId"`
	ErrorCode   string
	Resources   []string
	Indexed     []string
}

func exportAuditRecords(c *call) (any, error) {
	var req struct {
		FromSeq int64
		Limit   int
	}
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if req.FromSeq < 1 {
		req.FromSeq = 1
	}
	if req.Limit <= 0 || req.Limit > 1000 {
		req.Limit = 1000
	}
	if err := c.authorize("postern:ExportAuditRecords", "*", nil); err != nil {
		return nil, err
	}
	recs, err := c.s.auth.Store().ScanAudit(c.ctx, req.FromSeq, req.Limit)
	if err != nil {
		return nil, err
	}
	out := struct {
		Records []ExportedRecord
		NextSeq int64 `json:",omitempty"`
	}{Records: make([]ExportedRecord, 0, len(recs))}
	for _, r := range recs {
		body := json.RawMessage(r.Body)
		if !json.Valid(body) {
			// Keep an altered body visible to the verifier rather than
			// failing the export.
			b, _ := json.Marshal(string(r.Body))
			body = b
		}
		er := ExportedRecord{Seq: r.Seq, EventID: r.EventID, Body: body, PrevHash: hex.EncodeToString(r.PrevHash), Hash: hex.EncodeToString(r.Hash)}
		if r.Stored {
			er.Stored = &StoredColumns{EventTime: r.EventTime, EventName: r.EventName, EventSource: r.EventSource, UserName: r.UserName,
				AccessKeyID: r.AccessKeyID, ErrorCode: r.ErrorCode, Resources: r.Resources, Indexed: r.Indexed}
		}
		out.Records = append(out.Records, er)
	}
	if len(recs) == req.Limit {
		out.NextSeq = recs[len(recs)-1].Seq + 1
	}
	return out, nil
}

// ExportedDigest is one signed digest as ListAuditDigests returns it.
type ExportedDigest struct {
	Seq       int64
	Hash      string // hex
	Time      time.Time
	KeyID     string `json:"KeyId"`
	Signature []byte // base64 in JSON
}

func listAuditDigests(c *call) (any, error) {
	var req struct{ FromSeq int64 }
	if err := c.decodeJSON(&req); err != nil {
		return nil, err
	}
	if err := c.authorize("postern:ListAuditDigests", "*", nil); err != nil {
		return nil, err
	}
	ds, err := c.s.auth.Store().ListAuditDigests(c.ctx, req.FromSeq)
	if err != nil {
		return nil, err
	}
	out := struct{ Digests []ExportedDigest }{Digests: make([]ExportedDigest, 0, len(ds))}
	for _, d := range ds {
		out.Digests = append(out.Digests, ExportedDigest{d.Seq, hex.EncodeToString(d.Hash), d.Time, d.KeyID, d.Signature})
	}
	return out, nil
}

func getAuditPublicKey(c *call) (any, error) {
	if err := c.decodeJSON(&struct{}{}); err != nil {
		return nil, err
	}
	if err := c.authorize("postern:GetAuditPublicKey", "*", nil); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(c.s.cfg.AuditKey)
	if err != nil {
		return nil, postern.Internal(err, "cannot encode the audit key")
	}
	return struct {
		KeyID     string `json:"KeyId"`
		PublicKey string
	}{keyfile.KeyID(c.s.cfg.AuditKey), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}, nil
}
