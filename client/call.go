package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// maxResponse bounds what a raw call reads: audit pages are the largest
// answers and stay far below it.
const maxResponse = 64 << 20

// userAgent identifies the CLI in the audit trail.
const userAgent = "postern-cli"

// CallJSON makes one AWS JSON 1.1 call: it POSTs in (encoded as JSON) to
// cfg's endpoint with X-Amz-Target "<targetPrefix>.<op>", signed with SigV4
// for signingName in cfg.Region, and decodes the answer into out (which
// may be nil). An error answer ({"__type","Message"}) is an *APIError.
func CallJSON(ctx context.Context, cfg aws.Config, targetPrefix, signingName, op string, in, out any) error {
	if in == nil {
		in = struct{}{}
	}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: encode the request: %w", op, err)
	}
	header := http.Header{}
	header.Set("Content-Type", "application/x-amz-json-1.1")
	header.Set("X-Amz-Target", targetPrefix+"."+op)
	status, respBody, err := send(ctx, cfg, signingName, cfg.Region, header, body)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return jsonError(status, respBody)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(respBody, out); err != nil {
		return fmt.Errorf("%s: the server's answer is not the expected JSON: %v", op, err)
	}
	return nil
}

// jsonError decodes an AWS JSON error body. "__type" may carry a namespace
// prefix ("aws.protocoltests#Code") or a ":"-suffix, as AWS services send.
func jsonError(status int, body []byte) error {
	var e struct {
		Type     string `json:"__type"`
		Message  string `json:"Message"`
		MessageL string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil || e.Type == "" {
		return &APIError{Code: http.StatusText(status), Message: "the server answered HTTP " + fmt.Sprint(status) + " without an AWS error", StatusCode: status}
	}
	code := e.Type
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	code, _, _ = strings.Cut(code, ":")
	msg := e.Message
	if msg == "" {
		msg = e.MessageL
	}
	return &APIError{Code: code, Message: msg, StatusCode: status}
}

// CallQuery makes one AWS Query call (form-encoded Action and Version in
// params), signed for signingName in region, and decodes the XML answer
// into out: out's field tags are paths from inside the root element, for
// example `xml:"SimulatePrincipalPolicyResult>EvaluationResults>member"`.
// An error answer, in the IAM or the EC2 shape, is an *APIError.
func CallQuery(ctx context.Context, cfg aws.Config, signingName, region string, params url.Values, out any) error {
	header := http.Header{}
	header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	status, respBody, err := send(ctx, cfg, signingName, region, header, []byte(params.Encode()))
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return queryError(status, respBody)
	}
	if out == nil {
		return nil
	}
	if err := xml.Unmarshal(respBody, out); err != nil {
		return fmt.Errorf("%s: the server's answer is not the expected XML: %v", params.Get("Action"), err)
	}
	return nil
}

// queryError decodes <ErrorResponse><Error> (IAM) or
// <Response><Errors><Error> (EC2).
func queryError(status int, body []byte) error {
	var e struct {
		Code     string `xml:"Error>Code"`
		Message  string `xml:"Error>Message"`
		ECode    string `xml:"Errors>Error>Code"`
		EMessage string `xml:"Errors>Error>Message"`
	}
	if xml.Unmarshal(body, &e) != nil || e.Code == "" && e.ECode == "" {
		return &APIError{Code: http.StatusText(status), Message: "the server answered HTTP " + fmt.Sprint(status) + " without an AWS error", StatusCode: status}
	}
	if e.Code == "" {
		e.Code, e.Message = e.ECode, e.EMessage
	}
	return &APIError{Code: e.Code, Message: e.Message, StatusCode: status}
}

// send signs and POSTs body to the endpoint's root and returns the status
// and the (size-capped) answer.
func send(ctx context.Context, cfg aws.Config, signingName, region string, header http.Header, body []byte) (int, []byte, error) {
	if cfg.BaseEndpoint == nil {
		return 0, nil, errors.New("no endpoint is configured: " + setupHint)
	}
	endpoint := strings.TrimRight(*cfg.BaseEndpoint, "/") + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("endpoint URL %q: %w", *cfg.BaseEndpoint, err)
	}
	req.Header = header
	req.Header.Set("User-Agent", userAgent)
	req.ContentLength = int64(len(body))
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("get credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), signingName, region, time.Now().UTC()); err != nil {
		return 0, nil, fmt.Errorf("sign the request: %w", err)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read the answer: %w", err)
	}
	if len(b) > maxResponse {
		return 0, nil, fmt.Errorf("the answer exceeds %d bytes", maxResponse)
	}
	return resp.StatusCode, b, nil
}
