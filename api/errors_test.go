package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/postern-dev/postern"
)

func TestToWireMapsKindsPerProtocol(t *testing.T) {
	tests := []struct {
		p      protocol
		err    error
		code   string
		status int
	}{
		{protoJSON, postern.Invalidf("bad"), "InvalidArgsException", 400},
		{protoEC2Query, postern.Invalidf("bad"), "InvalidParameterValue", 400},
		{protoIAMQuery, postern.Invalidf("bad"), "ValidationError", 400},
		{protoIAMQuery, postern.NotFoundf("no user"), "NoSuchEntity", 404},
		{protoIAMQuery, postern.Existsf("dup"), "EntityAlreadyExists", 409},
		{protoIAMQuery, postern.Conflictf("in use"), "DeleteConflict", 409},
		{protoEC2Query, postern.Conflictf("in use"), "DependencyViolation", 400},
		{protoEC2Query, postern.Errorf(postern.KindDenied, "no"), "UnauthorizedOperation", 403},
		{protoIAMQuery, postern.Errorf(postern.KindDenied, "no"), "AccessDenied", 403},
		{protoJSON, postern.Errorf(postern.KindDenied, "no"), "AccessDeniedException", 403},
		{protoJSON, postern.Errorf(postern.KindThrottled, "slow"), "ThrottlingException", 400},
		{protoEC2Query, postern.CodedErrorf(postern.KindNotFound, "InvalidVpcID.NotFound", "x"), "InvalidVpcID.NotFound", 400},
		{protoJSON, postern.CodedErrorf(postern.KindInvalid, "RequestEntityTooLarge", "x"), "RequestEntityTooLarge", 413},
		{protoJSON, postern.CodedErrorf(postern.KindUnauthenticated, "InvalidSignatureException", "x"), "InvalidSignatureException", 403},
		{protoEC2Query, postern.CodedErrorf(postern.KindUnknownKey, "UnrecognizedClientException", "x"), "UnrecognizedClientException", 403},
		{protoJSON, errors.New("disk on fire"), "ServiceException", 500},
		{protoEC2Query, postern.Internal(errors.New("x"), "boom"), "InternalError", 500},
		{protoIAMQuery, fmt.Errorf("wrapped: %w", postern.NotFoundf("gone")), "NoSuchEntity", 404},
	}
	for _, tt := range tests {
		we := toWire(tt.p, tt.err)
		if we.Code != tt.code || we.Status != tt.status {
			t.Errorf("toWire(%v, %v) = %s/%d, want %s/%d", tt.p, tt.err, we.Code, we.Status, tt.code, tt.status)
		}
	}
}

func TestToWireHidesInternalDetails(t *testing.T) {
	we := toWire(protoJSON, postern.Internal(errors.New("open /secret/path: permission denied"), "store failed"))
	if we.Status != http.StatusInternalServerError {
		t.Fatalf("status %d", we.Status)
	}
	for _, leak := range []string{"/secret/path", "store failed"} {
		if contains(we.Message, leak) {
			t.Errorf("message %q leaks %q", we.Message, leak)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
