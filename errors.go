package postern

import (
	"errors"
	"fmt"
)

// Kind classifies an error so that one place (the API layer) can map it to an
// AWS error code and HTTP status for each wire protocol.
type Kind int

// Error kinds. Their order is not meaningful.
const (
	KindOther           Kind = iota // unclassified: reported as an internal error
	KindInvalid                     // the request is malformed or a value is out of range
	KindNotFound                    // the named thing does not exist
	KindExists                      // a thing with that name or id exists already
	KindConflict                    // the thing is in use or in a state that forbids the call
	KindDenied                      // authenticated, but policy does not allow it
	KindUnauthenticated             // the signature is missing, malformed, stale or wrong
	KindUnknownKey                  // the access key id is not known or not active
	KindThrottled                   // the caller exceeded its request rate
	KindUnavailable                 // a dependency (agent, endpoint, database) cannot be reached now
	KindLimit                       // a quota would be exceeded
	KindInternal                    // a bug or an unexpected failure on our side
)

var kindNames = [...]string{
	KindOther:           "other",
	KindInvalid:         "invalid",
	KindNotFound:        "not found",
	KindExists:          "exists",
	KindConflict:        "conflict",
	KindDenied:          "denied",
	KindUnauthenticated: "unauthenticated",
	KindUnknownKey:      "unknown key",
	KindThrottled:       "throttled",
	KindUnavailable:     "unavailable",
	KindLimit:           "limit",
	KindInternal:        "internal",
}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the one error type that crosses package boundaries. Code, when
// set, is a protocol-specific AWS error code that overrides the default code
// for Kind (for example "InvalidVpcID.NotFound"). Message is safe to show to
// the caller: it must never contain a secret.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Err     error // the underlying cause, for logs; never shown to callers
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Kind.String()
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// CodedErrorf returns an *Error with an explicit AWS error code.
func CodedErrorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected failure. The cause is kept for logs only;
// callers see a generic message.
func Internal(err error, format string, args ...any) *Error {
	return &Error{Kind: KindInternal, Message: fmt.Sprintf(format, args...), Err: err}
}

// KindOf reports the Kind of err, or KindOther when err is not an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// NotFoundf, Existsf and Conflictf are shorthands used by stores.
func NotFoundf(format string, args ...any) *Error { return Errorf(KindNotFound, format, args...) }

// Existsf reports that a thing with that name or id exists already.
func Existsf(format string, args ...any) *Error { return Errorf(KindExists, format, args...) }

// Conflictf reports that a thing is in use or in a state that forbids the call.
func Conflictf(format string, args ...any) *Error { return Errorf(KindConflict, format, args...) }

// Invalidf reports a malformed request or an out-of-range value.
func Invalidf(format string, args ...any) *Error { return Errorf(KindInvalid, format, args...) }
