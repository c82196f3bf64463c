package api

import (
	"errors"
	"net/http"

	"github.com/postern-dev/postern"
)

// protocol is a wire protocol family; each words errors its own way.
type protocol int

const (
	protoJSON     protocol = iota // AWS JSON 1.1 (Instance Connect, CloudTrail-style audit)
	protoEC2Query                 // EC2 Query, XML responses
	protoIAMQuery                 // IAM Query, XML responses
)

// wireError is an error as it goes on the wire.
type wireError struct {
	Code    string
	Message string
	Status  int
	Sender  bool // the caller's fault (IAM's <Type>Sender</Type>)
}

// defaultCodes gives, per protocol, the AWS error code for each kind when
// the error carries no explicit code.
var defaultCodes = map[protocol]map[postern.Kind]string{
	protoJSON: {
		postern.KindInvalid:     "InvalidArgsException",
		postern.KindNotFound:    "ResourceNotFoundException",
		postern.KindExists:      "ResourceAlreadyExistsException",
		postern.KindConflict:    "ConflictException",
		postern.KindDenied:      "AccessDeniedException",
		postern.KindUnknownKey:  "UnrecognizedClientException",
		postern.KindThrottled:   "ThrottlingException",
		postern.KindUnavailable: "ServiceUnavailableException",
		postern.KindLimit:       "LimitExceededException",
	},
	protoEC2Query: {
		postern.KindInvalid:     "InvalidParameterValue",
		postern.KindNotFound:    "InvalidParameterValue",
		postern.KindExists:      "InvalidParameterValue",
		postern.KindConflict:    "DependencyViolation",
		postern.KindDenied:      "UnauthorizedOperation",
		postern.KindUnknownKey:  "UnrecognizedClientException",
		postern.KindThrottled:   "ThrottlingException",
		postern.KindUnavailable: "Unavailable",
		postern.KindLimit:       "ResourceLimitExceeded",
	},
	protoIAMQuery: {
		postern.KindInvalid:     "ValidationError",
		postern.KindNotFound:    "NoSuchEntity",
		postern.KindExists:      "EntityAlreadyExists",
		postern.KindConflict:    "DeleteConflict",
		postern.KindDenied:      "AccessDenied",
		postern.KindUnknownKey:  "UnrecognizedClientException",
		postern.KindThrottled:   "ThrottlingException",
		postern.KindUnavailable: "ServiceUnavailable",
		postern.KindLimit:       "LimitExceeded",
	},
}

// internalCodes is the code for an unexpected failure, per protocol.
var internalCodes = map[protocol]string{
	protoJSON:     "ServiceException",
	protoEC2Query: "InternalError",
	protoIAMQuery: "ServiceFailure",
}

// kindStatus is the HTTP status for each kind.
var kindStatus = map[postern.Kind]int{
	postern.KindInvalid:         http.StatusBadRequest,
	postern.KindNotFound:        http.StatusBadRequest,
	postern.KindExists:          http.StatusConflict,
	postern.KindConflict:        http.StatusConflict,
	postern.KindDenied:          http.StatusForbidden,
	postern.KindUnauthenticated: http.StatusForbidden,
	postern.KindUnknownKey:      http.StatusForbidden,
	postern.KindThrottled:       http.StatusBadRequest,
	postern.KindUnavailable:     http.StatusServiceUnavailable,
	postern.KindLimit:           http.StatusConflict,
}

// codeStatus overrides the status for a few codes whose status AWS fixes.
var codeStatus = map[string]int{
	"RequestEntityTooLarge":     http.StatusRequestEntityTooLarge,
	"NoSuchEntity":              http.StatusNotFound,
	"UnknownOperationException": http.StatusBadRequest,
	// EC2 answers every client error with 400.
	"DependencyViolation":         http.StatusBadRequest,
	"InvalidSubnet.Conflict":      http.StatusBadRequest,
	"ResourceLimitExceeded":       http.StatusBadRequest,
	"IdempotentParameterMismatch": http.StatusBadRequest,
	"IncorrectState":              http.StatusBadRequest,
}

// toWire maps any error to what the caller sees. It is the one place where
// kinds become AWS codes and HTTP statuses. Unclassified errors become an
// internal error whose message reveals nothing.
func toWire(p protocol, err error) wireError {
	var e *postern.Error
	if !errors.As(err, &e) || e.Kind == postern.KindOther || e.Kind == postern.KindInternal {
		return wireError{Code: internalCodes[p], Message: "An internal error occurred; the request ID identifies it in the server log.", Status: http.StatusInternalServerError}
	}
	code := e.Code
	if code == "" {
		code = defaultCodes[p][e.Kind]
	}
	if code == "" {
		code = internalCodes[p]
	}
	status, ok := codeStatus[code]
	if !ok {
		status = kindStatus[e.Kind]
	}
	if status == 0 {
		status = http.StatusBadRequest
	}
	msg := e.Message
	if msg == "" {
		msg = e.Kind.String()
	}
	return wireError{Code: code, Message: msg, Status: status, Sender: status < 500}
}
