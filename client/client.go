// Package client connects Postern's command-line tools to a Postern server
// (or anything else that speaks the same AWS protocols). Configuration comes
// from the AWS SDK's own loader, so the AWS_* variables, ~/.aws profiles and
// AWS_CA_BUNDLE mean exactly what they mean to the AWS CLI. The SDK's EC2 and
// IAM clients are used where they exist; CallJSON and CallQuery sign the
// few calls the SDK modules in go.mod cannot make.
package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
)

// setupHint tells a user how to point the tools at a server.
const setupHint = `set AWS_ENDPOINT_URL or run: eval "$(postern env --data-dir DIR)"`

// Load reads the AWS configuration the way the AWS CLI does and checks that
// it can reach a server: an endpoint URL, a region and credentials must be
// configured. optFns are passed to config.LoadDefaultConfig after Postern's
// own options, so callers (and tests) may override them.
func Load(ctx context.Context, optFns ...func(*config.LoadOptions) error) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		// Credentials from the instance metadata service belong to real
		// AWS and cannot sign for Postern; off EC2, probing for them only
		// delays the "no credentials" error by seconds.
		config.WithEC2IMDSClientEnableState(imds.ClientDisabled),
		// Names the tool in the User-Agent, hence in the audit trail.
		config.WithAppID(userAgent),
	}
	cfg, err := config.LoadDefaultConfig(ctx, append(opts, optFns...)...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.BaseEndpoint == nil || *cfg.BaseEndpoint == "" {
		return aws.Config{}, errors.New("no Postern endpoint is configured: " + setupHint)
	}
	if u, err := url.Parse(*cfg.BaseEndpoint); err != nil || u.Scheme == "" || u.Host == "" {
		return aws.Config{}, fmt.Errorf("the endpoint URL %q is not an absolute URL like https://127.0.0.1:7443", *cfg.BaseEndpoint)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no region is configured: set AWS_REGION or run: eval \"$(postern env --data-dir DIR)\"")
	}
	// Fail here, once and clearly, rather than inside the first call.
	// The SDK caches what it retrieves, so this costs nothing later.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return aws.Config{}, errors.New("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run: eval \"$(postern env --data-dir DIR)\"")
	}
	return cfg, nil
}

// EC2 returns an EC2 client for cfg.
func EC2(cfg aws.Config) *ec2.Client {
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.Retryer = noCertRetries(o.Retryer) })
}

// IAM returns an IAM client for cfg.
func IAM(cfg aws.Config) *iam.Client {
	return iam.NewFromConfig(cfg, func(o *iam.Options) { o.Retryer = noCertRetries(o.Retryer) })
}

// APIError is an error answered by the server in an AWS error shape.
// It implements smithy.APIError, so callers can treat errors from the SDK
// and from CallJSON and CallQuery alike.
type APIError struct {
	Code       string
	Message    string
	StatusCode int
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// ErrorCode returns the AWS error code.
func (e *APIError) ErrorCode() string { return e.Code }

// ErrorMessage returns the server's message.
func (e *APIError) ErrorMessage() string { return e.Message }

// ErrorFault says whose fault the error was, by its HTTP status.
func (e *APIError) ErrorFault() smithy.ErrorFault {
	switch {
	case e.StatusCode >= 500:
		return smithy.FaultServer
	case e.StatusCode >= 400:
		return smithy.FaultClient
	}
	return smithy.FaultUnknown
}

var _ smithy.APIError = (*APIError)(nil)

// ErrorCode returns the AWS error code carried by err, or "".
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Clean returns err as one short line for a person: "<Code>: <Message>"
// for an error the server answered, or the root cause of a transport
// failure, without the SDK's operation, request id and retry decorations.
// The result still unwraps to err. Clean(nil) is nil, and an error that
// already holds a cleaned one (say "delete vpc-1: <cleaned>") is returned
// as it is, context included.
func Clean(err error) error {
	var ce *cleanError
	if err == nil || errors.As(err, &ce) {
		return err
	}
	return &cleanError{msg: describe(err), err: err}
}

type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }

func describe(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if ae.ErrorMessage() == "" {
			return ae.ErrorCode()
		}
		return ae.ErrorCode() + ": " + oneLine(ae.ErrorMessage())
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "cannot reach " + endpointOf(ue.URL) + ": " + rootCause(ue.Err)
	}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		return oe.ServiceID + " " + oe.OperationName + ": " + rootCause(oe.Err)
	}
	return oneLine(err.Error())
}

// endpointOf returns the scheme and host of a request URL.
func endpointOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

// rootCause returns the innermost error's text, which is the part of a
// wrapped network error that says what went wrong ("connection refused",
// "certificate signed by unknown authority").
func rootCause(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	return oneLine(err.Error())
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
