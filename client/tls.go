package client

import (
	"crypto/tls"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TLSConfig returns the TLS settings of cfg's HTTP client, which hold the
// roots of AWS_CA_BUNDLE (or a profile's ca_bundle), for connections the
// SDK does not make itself, such as OpenTunnel WebSockets: an endpoint's
// certificate comes from the same CA as the server's. Nil means the
// system's roots.
func TLSConfig(cfg aws.Config) *tls.Config {
	if c, ok := cfg.HTTPClient.(interface{ GetTransport() *http.Transport }); ok {
		if t := c.GetTransport(); t != nil && t.TLSClientConfig != nil {
			return t.TLSClientConfig.Clone()
		}
	}
	return nil
}
