package client

import (
	"context"
	"crypto/tls"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// certRetryer keeps the SDK's retry policy but gives up at once on a
// certificate the client does not trust: a wrong or missing CA bundle does
// not fix itself between attempts, and retrying only delays the one-line
// error by seconds.
type certRetryer struct {
	aws.Retryer
}

func (r certRetryer) IsErrorRetryable(err error) bool {
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return false
	}
	return r.Retryer.IsErrorRetryable(err)
}

// GetAttemptToken passes on the context-aware form when the wrapped
// retryer has it, as the SDK itself prefers.
func (r certRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.Retryer.GetInitialToken(), nil
}

var _ aws.RetryerV2 = certRetryer{}

// noCertRetries wraps a client's retryer; see certRetryer.
func noCertRetries(r aws.Retryer) aws.Retryer {
	if r == nil {
		return nil
	}
	return certRetryer{r}
}
