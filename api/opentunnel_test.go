package api

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/postern-dev/postern/endpointproto"
	"github.com/postern-dev/postern/opentunnel"
)

// A presigned OpenTunnel URL is bound to the first address that uses it;
// writing its signature's hexadecimal digits in another case does not
// make it a new URL.
func TestTunnelURLBoundWhateverTheSignatureCase(t *testing.T) {
	f := newTunnelFixture(t)
	k, secret, err := f.auth.CreateAccessKey(t.Context(), "tunneller")
	if err != nil {
		t.Fatal(err)
	}
	creds := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: secret}, nil
	})
	raw, err := opentunnel.Presign(t.Context(), creds, "us-east-1", f.ep.DNSName, opentunnel.Params{EndpointID: f.ep.ID, PrivateIP: "10.0.1.5", RemotePort: 22})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	try := func(rawQuery, ip string) endpointproto.AuthorizeResponse {
		return f.s.AuthorizeTunnel(t.Context(), f.ep, endpointproto.AuthorizeRequest{
			Method: "GET", RequestURI: u.Path + "?" + rawQuery, Host: f.ep.DNSName, SourceIP: ip}, nil)
	}
	if r := try(u.RawQuery, "192.0.2.1"); !r.Allowed {
		t.Fatalf("the URL's first use: %+v", r.Error)
	}
	sig := u.Query().Get("X-Amz-Signature")
	for name, q := range map[string]string{
		"as signed":      u.RawQuery,
		"upper-case hex": strings.Replace(u.RawQuery, "X-Amz-Signature="+sig, "X-Amz-Signature="+strings.ToUpper(sig), 1),
	} {
		if r := try(q, "203.0.113.9"); r.Allowed || r.Error == nil || r.Error.ErrorCode != "AccessDeniedException" {
			t.Errorf("the URL %s, from another address: allowed %v, %+v; want AccessDeniedException", name, r.Allowed, r.Error)
		}
	}
}
