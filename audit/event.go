// Package audit writes and verifies Postern's tamper-evident audit trail:
// CloudTrail-shaped events, hash-chained by the store and covered by
// digests that the server signs with its own Ed25519 key.
package audit

import "time"

// EventVersion is the CloudTrail record format version Postern emits.
const EventVersion = "1.08"

// UserIdentity says who made a call, as far as it could be read. For a call
// that failed authentication only AccessKeyID (and perhaps nothing) is known.
type UserIdentity struct {
	Type        string `json:"type"` // "IAMUser", "Unknown", "AWSService"
	PrincipalID string `json:"principalId,omitempty"`
	ARN         string `json:"arn,omitempty"`
	AccountID   string `json:"accountId,omitempty"`
	AccessKeyID string `json:"accessKeyId,omitempty"`
	UserName    string `json:"userName,omitempty"`
}

// Resource names one resource an event touched.
type Resource struct {
	ARN       string `json:"ARN"`
	AccountID string `json:"accountId,omitempty"`
	Type      string `json:"type,omitempty"` // e.g. "AWS::EC2::Instance"
}

// Event is one audit record in CloudTrail's shape. RequestParameters and
// ResponseElements must never hold a secret: callers redact before
// recording, and Trail.Record hides any field whose name looks secret
// (IsSecretName) as a second line of defence. AdditionalEventData carries
// Postern-specific facts (the policy decisions, tunnel byte counts, …).
type Event struct {
	EventVersion        string         `json:"eventVersion"`
	EventTime           time.Time      `json:"eventTime"`
	EventSource         string         `json:"eventSource"` // e.g. "ec2.amazonaws.com"
	EventName           string         `json:"eventName"`
	AWSRegion           string         `json:"awsRegion"`
	SourceIPAddress     string         `json:"sourceIPAddress"`
	UserAgent           string         `json:"userAgent,omitempty"`
	UserIdentity        UserIdentity   `json:"userIdentity"`
	RequestParameters   map[string]any `json:"requestParameters"`
	ResponseElements    map[string]any `json:"responseElements"`
	AdditionalEventData map[string]any `json:"additionalEventData,omitempty"`
	ErrorCode           string         `json:"errorCode,omitempty"`
	ErrorMessage        string         `json:"errorMessage,omitempty"`
	RequestID           string         `json:"requestID"`
	EventID             string         `json:"eventID"`
	ReadOnly            bool           `json:"readOnly"`
	Resources           []Resource     `json:"resources,omitempty"`
	EventType           string         `json:"eventType"` // "AwsApiCall", "PosternTunnel", …
	RecipientAccountID  string         `json:"recipientAccountId"`
}
