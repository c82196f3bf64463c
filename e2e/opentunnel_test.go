package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/postern-dev/postern/endpointproto"
)

// fakeEndpoint plays an endpoint process against a real server, one
// protocol call at a time, so that the server's side of OpenTunnel is
// tested on its own.
type fakeEndpoint struct {
	s          *server
	id         string
	credential string
}

// createEndpoint makes a VPC, a subnet and an endpoint in it, and returns
// the endpoint with its join credential.
func createEndpoint(t *testing.T, s *server, cidr string, extra ...string) *fakeEndpoint {
	t.Helper()
	ctx := context.Background()
	ec := s.adminEC2()
	vpc, err := ec.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(cidr)})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := ec.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(cidr)})
	if err != nil {
		t.Fatal(err)
	}
	r := s.do(t, request{Form: ec2Form("CreateInstanceConnectEndpoint", append([]string{"SubnetId", aws.ToString(sn.Subnet.SubnetId)}, extra...)...), Creds: s.admin()})
	r.want200(t)
	var raw struct {
		Endpoint   rawEndpoint `xml:"instanceConnectEndpoint"`
		Credential string      `xml:"posternJoinCredential"`
	}
	if err := xml.Unmarshal(r.Body, &raw); err != nil {
		t.Fatal(err)
	}
	noteSecret(raw.Credential, "join credential of "+raw.Endpoint.ID)
	return &fakeEndpoint{s: s, id: raw.Endpoint.ID, credential: raw.Credential}
}

// call POSTs v to path with the endpoint's credential and decodes the
// answer into out (when not nil); it returns the status.
func (e *fakeEndpoint) call(t *testing.T, path, credential string, v, out any) int {
	t.Helper()
	body, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPost, e.s.URL+path, bytes.NewReader(body))
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	resp, err := e.s.httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("POST %s: answer %s: %v", path, b, err)
		}
	}
	if strings.Contains(string(b), e.credential) {
		t.Errorf("POST %s echoed the credential", path)
	}
	return resp.StatusCode
}

// presign signs an OpenTunnel URL for host as the AWS CLI does: GET, the
// parameters in the query, 60 seconds, the empty payload's hash.
func presign(t *testing.T, keyID, secret, host string, q url.Values, expires int, at time.Time) string {
	t.Helper()
	q.Set("X-Amz-Expires", strconv.Itoa(expires))
	req, _ := http.NewRequest(http.MethodGet, "wss://"+host+endpointproto.OpenTunnelPath+"?"+q.Encode(), nil)
	empty := sha256.Sum256(nil)
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret},
		req, hex.EncodeToString(empty[:]), "ec2-instance-connect", region, at)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func tunnelQuery(endpointID, ip string, port int, maxDuration int) url.Values {
	q := url.Values{endpointproto.ParamEndpointID: {endpointID}, endpointproto.ParamPrivateIPAddress: {ip},
		endpointproto.ParamRemotePort: {strconv.Itoa(port)}}
	if maxDuration > 0 {
		q.Set(endpointproto.ParamMaxTunnelDuration, strconv.Itoa(maxDuration))
	}
	return q
}

// authorize hands a presigned URL to the server as the endpoint would.
func (e *fakeEndpoint) authorize(t *testing.T, signed string) endpointproto.AuthorizeResponse {
	t.Helper()
	return e.authorizeFrom(t, signed, "127.0.0.1")
}

// authorizeFrom is authorize for a client at source.
func (e *fakeEndpoint) authorizeFrom(t *testing.T, signed, source string) endpointproto.AuthorizeResponse {
	t.Helper()
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	var resp endpointproto.AuthorizeResponse
	if code := e.call(t, endpointproto.AuthorizePath, e.credential, endpointproto.AuthorizeRequest{
		Method: http.MethodGet, RequestURI: u.RequestURI(), Host: u.Host, SourceIP: source, UserAgent: "fake-endpoint-test",
	}, &resp); code != http.StatusOK {
		t.Fatalf("authorize: status %d", code)
	}
	if !resp.Allowed && (resp.Error == nil || resp.Error.ErrorCode == "" || resp.Error.Message == "" || resp.Error.Status < 400) {
		t.Fatalf("a refusal without a clear error: %+v", resp)
	}
	return resp
}

// wantRefused asserts a refusal with status and code ("" for any), and
// that it was audited.
func (e *fakeEndpoint) wantRefused(t *testing.T, what string, resp endpointproto.AuthorizeResponse, status int, code string) {
	t.Helper()
	if resp.Allowed {
		t.Errorf("%s: allowed, want %s", what, code)
		return
	}
	if resp.Error.Status != status || code != "" && resp.Error.ErrorCode != code {
		t.Errorf("%s: %d %s (%s), want %d %s", what, resp.Error.Status, resp.Error.ErrorCode, resp.Error.Message, status, code)
	}
	t.Logf("%s: %d %s: %s", what, resp.Error.Status, resp.Error.ErrorCode, resp.Error.Message)
	e.s.wantAudited(t, "OpenTunnel", resp.Error.RequestID, resp.Error.ErrorCode, "")
}

func TestOpenTunnelServerSide(t *testing.T) {
	s := startServer(t)
	e := createEndpoint(t, s, "10.60.0.0/16")
	const dns = "edge.internal.test:8443"

	// Joining needs the credential.
	for _, cred := range []string{"", "junk", e.id + ".wrong-secret-wrong-secret-wrong"} {
		if code := e.call(t, endpointproto.JoinPath, cred, endpointproto.JoinRequest{Mode: "listen", DNSName: dns}, nil); code != http.StatusUnauthorized {
			t.Errorf("join with credential %q: status %d, want 401", cred, code)
		}
	}
	if code := e.call(t, endpointproto.JoinPath, e.credential, endpointproto.JoinRequest{Mode: "sideways"}, nil); code != http.StatusBadRequest {
		t.Errorf("join in an unknown mode: status %d, want 400", code)
	}
	// A listen-mode join gets a certificate for its host from the server's CA.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	var joined endpointproto.JoinResponse
	if code := e.call(t, endpointproto.JoinPath, e.credential, endpointproto.JoinRequest{Mode: "listen", DNSName: dns, CertPublicKey: pub}, &joined); code != http.StatusOK {
		t.Fatalf("join: status %d", code)
	}
	if joined.EndpointID != e.id || joined.DNSName != dns || len(joined.VPCCIDRs) != 1 || joined.VPCCIDRs[0] != "10.60.0.0/16" ||
		joined.Settings.MaxConnections != 20 || joined.Settings.MaxTunnelDuration != 3600 || len(joined.Certificate) != 2 {
		t.Fatalf("join answered %+v", joined)
	}
	leaf, err := x509.ParseCertificate(joined.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "edge.internal.test", Roots: s.tlsConfig().RootCAs}); err != nil {
		t.Errorf("the endpoint's certificate does not verify under the server's CA: %v", err)
	}
	got := describeEndpoints(t, s.adminEC2(), 0, []string{e.id})
	if len(got) != 1 || got[0].State != ec2types.Ec2InstanceConnectEndpointStateCreateComplete || aws.ToString(got[0].DnsName) != dns {
		t.Fatalf("after the join: %+v", got)
	}

	// The admin may open a tunnel; the decision is audited.
	now := time.Now()
	ok := e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 0), 60, now))
	if !ok.Allowed || ok.Tunnel.Target != "10.60.1.5" || ok.Tunnel.RemotePort != 22 || ok.Tunnel.MaxDuration != 3600 ||
		!strings.HasSuffix(ok.Tunnel.Caller, ":user/admin") {
		t.Fatalf("the admin's tunnel: %+v %+v", ok, ok.Error)
	}
	s.wantAudited(t, "OpenTunnel", ok.Tunnel.ID, "", s.AdminKeyID)
	liveTunnels := func() int {
		t.Helper()
		eps := s.rawDescribe(t, "InstanceConnectEndpointId.1", e.id)
		if len(eps) != 1 || eps[0].LiveTunnels == nil {
			t.Fatalf("DescribeInstanceConnectEndpoints %s: %+v, want one endpoint with posternLiveTunnels", e.id, eps)
		}
		return *eps[0].LiveTunnels
	}
	if n := liveTunnels(); n != 1 {
		t.Errorf("with the admin's tunnel open, DescribeInstanceConnectEndpoints shows %d live tunnels, want 1", n)
	}

	// Bad URLs, each refused and audited.
	signed := presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 600), 60, now)
	e.authorize(t, signed)
	// The same client may use it again (signatures are deterministic:
	// identical tunnels signed within a second have the same URL); a
	// replay from anywhere else is refused.
	if r := e.authorize(t, signed); !r.Allowed {
		t.Errorf("the same URL again from the same client: %+v", r.Error)
	}
	replayed := e.authorizeFrom(t, signed, "192.0.2.9")
	if replayed.Allowed || replayed.Error.Status != 403 || replayed.Error.ErrorCode != "AccessDeniedException" {
		t.Errorf("replayed from another address: %+v %+v", replayed, replayed.Error)
	} else if rec := s.findAudit(t, "OpenTunnel", replayed.Error.RequestID); rec["sourceIPAddress"] != "192.0.2.9" {
		t.Errorf("the replay's audit record: %v", rec)
	}
	e.wantRefused(t, "expired", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 0), 60, now.Add(-2*time.Minute))), 403, "")
	altered := strings.Replace(presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 0), 60, now), "remotePort=22", "remotePort=3389", 1)
	e.wantRefused(t, "altered", e.authorize(t, altered), 403, "")
	e.wantRefused(t, "signed for another host", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, "other.internal.test:8443", tunnelQuery(e.id, "10.60.1.5", 22, 0), 60, now)), 403, "AccessDeniedException")
	e.wantRefused(t, "signed for another endpoint", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery("eice-0123456789abcdef0", "10.60.1.5", 22, 0), 60, now)), 403, "AccessDeniedException")
	e.wantRefused(t, "a port not allowed", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 5432, 0), 60, now)), 403, "AccessDeniedException")
	e.wantRefused(t, "over 3,600 s", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 3601), 60, now)), 403, "AccessDeniedException")
	e.wantRefused(t, "a URL living 5 minutes", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 0), 300, now)), 400, "ValidationException")
	for _, ip := range []string{"10.61.1.5", "127.0.0.1", "169.254.169.254", "224.0.0.1"} {
		e.wantRefused(t, "target "+ip, e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, ip, 22, 0), 60, now)), 403, "AccessDeniedException")
	}
	e.wantRefused(t, "no address", e.authorize(t, presign(t, s.AdminKeyID, s.AdminSecret, dns, tunnelQuery(e.id, "not-an-ip", 22, 0), 60, now)), 400, "ValidationException")

	// A policy capping maxTunnelDuration at 600 denies 3,600 and allows 600.
	keyID, secret := createUserWithKey(t, s, "tunneller")
	putPolicy(t, s, "--user", "tunneller", "tunnels", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2-instance-connect:OpenTunnel","Resource":"*",
		"Condition":{"NumericLessThanEquals":{"ec2-instance-connect:maxTunnelDuration":"600"},"IpAddress":{"ec2-instance-connect:privateIpAddress":"10.60.1.0/24"}}}]}`)
	e.wantRefused(t, "3,600 s against a 600 s policy", e.authorize(t, presign(t, keyID, secret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 3600), 60, now)), 403, "AccessDeniedException")
	e.wantRefused(t, "an address the policy excludes", e.authorize(t, presign(t, keyID, secret, dns, tunnelQuery(e.id, "10.60.2.5", 22, 600), 60, now)), 403, "AccessDeniedException")
	if r := e.authorize(t, presign(t, keyID, secret, dns, tunnelQuery(e.id, "10.60.1.5", 22, 600), 60, now)); !r.Allowed || r.Tunnel.MaxDuration != 600 {
		t.Errorf("600 s within the policy: %+v %+v", r, r.Error)
	}

	// A tunnel's end is audited with bytes, duration and reason, and
	// gives its place back.
	before := liveTunnels()
	if code := e.call(t, endpointproto.ClosedPath, e.credential, endpointproto.Closed{TunnelID: ok.Tunnel.ID, BytesIn: 1234, BytesOut: 5678,
		DurationMillis: 4200, Cause: "client-closed", Code: 1000, Reason: "done"}, nil); code != http.StatusNoContent {
		t.Fatalf("closed: status %d", code)
	}
	if after := liveTunnels(); after != before-1 {
		t.Errorf("closing a tunnel took live tunnels from %d to %d, want %d", before, after, before-1)
	}
	var closeRec map[string]any
	for _, ev := range s.lookupEvents(t, map[string]any{"LookupAttributes": []map[string]string{{"AttributeKey": "EventName", "AttributeValue": "CloseTunnel"}}}) {
		if d, _ := ev.Record["additionalEventData"].(map[string]any); d["tunnelId"] == ok.Tunnel.ID {
			closeRec = ev.Record
		}
	}
	if closeRec == nil {
		t.Fatal("no CloseTunnel record for the tunnel")
	}
	d := closeRec["additionalEventData"].(map[string]any)
	if d["bytesIn"] != 1234.0 || d["bytesOut"] != 5678.0 || d["durationSeconds"] != 4.2 || d["closeReason"] != "done" ||
		closeRec["userIdentity"].(map[string]any)["userName"] != "admin" {
		t.Errorf("CloseTunnel record: %v", closeRec)
	}
	s.assertServing(t)
}

// TestOpenTunnelRelay opens a tunnel through the server to an endpoint in
// relay mode, played by the test: the server authorizes, sends a dial on
// the control connection, takes the dial-back, and splices.
func TestOpenTunnelRelay(t *testing.T) {
	s := startServer(t)
	e := createEndpoint(t, s, "10.61.0.0/16")
	var joined endpointproto.JoinResponse
	if code := e.call(t, endpointproto.JoinPath, e.credential, endpointproto.JoinRequest{Mode: "relay"}, &joined); code != http.StatusOK {
		t.Fatalf("join: status %d", code)
	}
	host := strings.TrimPrefix(s.URL, "https://")
	if joined.DNSName != host {
		t.Fatalf("a relay-mode endpoint's DnsName is %q, want the server's %q", joined.DNSName, host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	header := http.Header{"Authorization": {"Bearer " + e.credential}}
	wsURL := "wss://" + host
	dialOpts := &websocket.DialOptions{HTTPClient: s.httpClient, HTTPHeader: header}
	control, _, err := websocket.Dial(ctx, wsURL+endpointproto.ControlPath, dialOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer control.CloseNow()
	var first endpointproto.Control
	if err := wsjson.Read(ctx, control, &first); err != nil || first.Type != endpointproto.ControlSettings {
		t.Fatalf("first control message %+v, %v", first, err)
	}

	// The endpoint's side: on a dial, echo what comes, upper-cased, and
	// end with a policy close after "bye"; refuse 10.61.9.9.
	endpointDone := make(chan error, 1)
	go func() {
		endpointDone <- func() error {
			for {
				var msg endpointproto.Control
				if err := wsjson.Read(ctx, control, &msg); err != nil {
					return err
				}
				switch msg.Type {
				case endpointproto.ControlDelete:
					return wsjson.Write(ctx, control, endpointproto.Control{Type: endpointproto.ControlDeleted})
				case endpointproto.ControlDial:
					back := wsURL + endpointproto.RelayPath + "?tunnel=" + url.QueryEscape(msg.Dial.ID)
					if msg.Dial.Target == "10.61.9.9" {
						te, _ := json.Marshal(endpointproto.TunnelError{Status: 502, ErrorCode: "TargetUnreachable", Message: "connect to 10.61.9.9:22 refused"})
						h := header.Clone()
						h.Set(endpointproto.TunnelErrorHeader, string(te))
						_, resp, err := websocket.Dial(ctx, back, &websocket.DialOptions{HTTPClient: s.httpClient, HTTPHeader: h})
						if err == nil || resp == nil || resp.StatusCode != http.StatusNoContent {
							return errors.New("an error dial-back was not answered 204")
						}
						continue
					}
					c, _, err := websocket.Dial(ctx, back, dialOpts)
					if err != nil {
						return err
					}
					go func() {
						defer c.CloseNow()
						for {
							_, data, err := c.Read(ctx)
							if err != nil {
								return
							}
							if string(data) == "bye" {
								c.Close(websocket.StatusPolicyViolation, "maximum tunnel duration reached")
								return
							}
							c.Write(ctx, websocket.MessageBinary, bytes.ToUpper(data))
						}
					}()
				}
			}
		}()
	}()

	clientDial := func(q url.Values) (*websocket.Conn, *http.Response, error) {
		return websocket.Dial(ctx, presign(t, s.AdminKeyID, s.AdminSecret, host, q, 60, time.Now()), &websocket.DialOptions{HTTPClient: s.httpClient})
	}
	c, resp, err := clientDial(tunnelQuery(e.id, "10.61.1.5", 22, 0))
	if err != nil {
		t.Fatalf("relayed tunnel: %v", err)
	}
	if resp.Header.Get("x-amzn-RequestId") == "" {
		t.Error("the handshake answer has no x-amzn-RequestId")
	}
	for _, m := range []string{"hello", "relay"} {
		if err := c.Write(ctx, websocket.MessageBinary, []byte(m)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != strings.ToUpper(m) {
			t.Fatalf("echo of %q: %q, %v", m, got, err)
		}
	}
	c.Write(ctx, websocket.MessageBinary, []byte("bye"))
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "maximum tunnel duration") {
		t.Errorf("the endpoint's close reached the client as %v", err)
	}

	// The endpoint's refusal reaches the client as a handshake error.
	_, resp, err = clientDial(tunnelQuery(e.id, "10.61.9.9", 22, 0))
	if err == nil || resp == nil || resp.StatusCode != 502 {
		t.Fatalf("a refused dial: %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var he struct{ ErrorCode, Message string }
	if json.Unmarshal(body, &he) != nil || he.ErrorCode != "TargetUnreachable" || resp.Header.Get("x-amzn-RequestId") == "" {
		t.Errorf("refused dial answered %s %v", body, resp.Header)
	}
	// An unauthorized client never reaches the endpoint.
	_, resp, err = websocket.Dial(ctx, presign(t, s.AdminKeyID, "0123456789012345678901234567890123456789", host, tunnelQuery(e.id, "10.61.1.5", 22, 0), 60, time.Now()),
		&websocket.DialOptions{HTTPClient: s.httpClient})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("a badly signed relayed tunnel: %v %v", resp, err)
	}

	// Deleting the endpoint tells its process, which confirms.
	if _, err := s.adminEC2().DeleteInstanceConnectEndpoint(ctx, &ec2.DeleteInstanceConnectEndpointInput{InstanceConnectEndpointId: aws.String(e.id)}); err != nil {
		t.Fatal(err)
	}
	if err := <-endpointDone; err != nil {
		t.Fatalf("the endpoint's side: %v", err)
	}
	waitFor(t, "the endpoint's deletion to complete", 10*time.Second, func() bool {
		got := describeEndpoints(t, s.adminEC2(), 0, []string{e.id})
		return len(got) == 1 && got[0].State == ec2types.Ec2InstanceConnectEndpointStateDeleteComplete
	})
	// A process that comes back learns it was deleted; clients are refused.
	if _, resp, err := websocket.Dial(ctx, wsURL+endpointproto.ControlPath, dialOpts); err == nil || resp == nil || resp.StatusCode != http.StatusGone {
		t.Errorf("the control connection of a deleted endpoint: %v %v", resp, err)
	}
	if _, resp, err := clientDial(tunnelQuery(e.id, "10.61.1.5", 22, 0)); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a tunnel to a deleted endpoint: %v %v", resp, err)
	}
	// An endpoint that never joined opens no tunnels.
	never := createEndpoint(t, s, "10.62.0.0/16")
	_, resp, err = websocket.Dial(ctx, presign(t, s.AdminKeyID, s.AdminSecret, host, tunnelQuery(never.id, "10.62.1.5", 22, 0), 60, time.Now()), &websocket.DialOptions{HTTPClient: s.httpClient})
	if err == nil || resp == nil || resp.StatusCode >= 500 || resp.StatusCode < 400 {
		t.Fatalf("a tunnel to an endpoint that never joined: %v %v", resp, err)
	}
	body, _ = io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "IncorrectState") && !strings.Contains(string(body), "create-in-progress") {
		t.Errorf("a tunnel to an endpoint that never joined: %s", body)
	}
	s.assertServing(t)
}
