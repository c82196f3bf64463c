package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/audit"
	"github.com/postern-dev/postern/authority"
	"github.com/postern-dev/postern/sigv4"
)

// service is one AWS service spoken on the listener.
type service struct {
	key         string // JSON target prefix, or Query API version
	proto       protocol
	signingName string // the SigV4 service name clients sign with
	eventSource string // CloudTrail's eventSource
	xmlns       string // Query protocols: response namespace
	ops         map[string]*operation
}

// operation is one API action.
type operation struct {
	readOnly bool
	handle   func(c *call) (any, error)
}

// call carries one request through decode, authentication, authorization,
// the operation, auditing and rendering.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	start time.Time
	id    string // request id

	svc    *service
	opName string
	op     *operation
	body   []byte
	form   url.Values // Query protocols

	principal *authority.Principal
	env       authority.Env
	// console: the caller was authenticated by a console session
	// (ServeAs), not by SigV4.
	console bool

	// Filled by handlers for the audit record.
	params    map[string]any
	response  map[string]any
	resources []audit.Resource
	extra     map[string]any
}

func newCall(s *Server, w http.ResponseWriter, r *http.Request) *call {
	c := &call{s: s, w: w, r: r, ctx: r.Context(), start: s.now(), id: newRequestID()}
	c.env = authority.Env{SourceIP: SourceIP(r), UserAgent: r.UserAgent(), Time: c.start}
	w.Header().Set("x-amzn-RequestId", c.id)
	return c
}

func (c *call) serve() {
	err := c.decode()
	if err == nil && !c.console {
		err = c.authenticate()
	}
	if err == nil {
		err = c.throttled()
	}
	var resp any
	if err == nil {
		resp, err = c.op.handle(c)
		if err == nil && c.svc.proto == protoIAMQuery && !c.op.readOnly {
			// Users, keys, groups or policies changed: decisions from now
			// on must see it.
			c.s.auth.InvalidateIdentities()
		}
	}
	if aerr := c.record(err); aerr != nil {
		// A call never succeeds unaudited.
		c.s.log.Error("audit write failed; failing the request", "request_id", c.id, "err", aerr)
		c.s.cfg.Metrics.auditFailures.Inc()
		resp, err = nil, postern.Internal(aerr, "audit write failed")
	}
	status := c.render(resp, err)
	c.s.cfg.Metrics.observe(c, status, err)
	if err != nil && status >= 500 {
		c.s.log.Error("request failed", "request_id", c.id, "operation", c.opName, "err", err)
	}
}

// decode reads the body (capped), chooses the service and operation, and
// parses Query parameters.
func (c *call) decode() error {
	var err error
	c.body, err = io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.s.cfg.MaxBody))
	if err != nil {
		c.pickService() // so that the error is worded in the right protocol
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return postern.CodedErrorf(postern.KindInvalid, "RequestEntityTooLarge", "Request body exceeds %d bytes", c.s.cfg.MaxBody)
		}
		return postern.Invalidf("cannot read the request body")
	}
	if c.r.Method != http.MethodPost && c.r.Method != http.MethodGet {
		c.pickService()
		return postern.CodedErrorf(postern.KindInvalid, "InvalidAction", "Method %s is not supported; use POST", c.r.Method)
	}
	if target := c.r.Header.Get("X-Amz-Target"); target != "" {
		prefix, name, ok := strings.Cut(target, ".")
		if i := strings.LastIndexByte(target, '.'); i > 0 {
			prefix, name, ok = target[:i], target[i+1:], true
		}
		c.svc = c.s.services[prefix]
		if !ok || c.svc == nil || c.svc.proto != protoJSON {
			c.svc = nil
			return postern.CodedErrorf(postern.KindInvalid, "UnknownOperationException", "Unknown service or operation in X-Amz-Target: %q", target)
		}
		c.opName = name
		if c.op = c.svc.ops[name]; c.op == nil {
			return postern.CodedErrorf(postern.KindInvalid, "UnknownOperationException", "Unknown operation %s.%s", prefix, name)
		}
		if len(bytes.TrimSpace(c.body)) == 0 {
			c.body = []byte("{}")
		}
		var m map[string]any
		if err := json.Unmarshal(c.body, &m); err != nil {
			return postern.CodedErrorf(postern.KindInvalid, "SerializationException", "The request body is not a JSON object: %s", jsonProblem(err))
		}
		c.params = m
		return nil
	}
	// Query protocols: parameters in a form body or the URL.
	if c.r.Method == http.MethodPost {
		ct, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
		if ct != "application/x-www-form-urlencoded" {
			return postern.CodedErrorf(postern.KindInvalid, "MissingAction", "The request has no X-Amz-Target header and no form-encoded Action parameter")
		}
		c.form, err = url.ParseQuery(string(c.body))
	} else {
		c.form, err = url.ParseQuery(c.r.URL.RawQuery)
	}
	if err != nil {
		return postern.CodedErrorf(postern.KindInvalid, "MalformedQueryString", "The query string is malformed: %v", err)
	}
	c.opName = c.form.Get("Action")
	version := c.form.Get("Version")
	c.svc = c.s.services[version]
	c.params = queryParams(c.form)
	switch {
	case c.opName == "":
		return postern.CodedErrorf(postern.KindInvalid, "MissingAction", "The request must contain the parameter Action")
	case version == "":
		return postern.CodedErrorf(postern.KindInvalid, "MissingParameter", "The request must contain the parameter Version")
	case c.svc == nil:
		return postern.CodedErrorf(postern.KindInvalid, "NoSuchVersion", "An API version %q does not exist; Postern speaks EC2 2016-11-15 and IAM 2010-05-08", version)
	}
	if c.op = c.svc.ops[c.opName]; c.op == nil {
		return postern.CodedErrorf(postern.KindInvalid, "InvalidAction", "The action %s is not valid for this web service.", c.opName)
	}
	return nil
}

// pickService guesses the service from the headers alone, for errors that
// happen before decoding.
func (c *call) pickService() {
	if t := c.r.Header.Get("X-Amz-Target"); t != "" {
		if i := strings.LastIndexByte(t, '.'); i > 0 {
			c.svc = c.s.services[t[:i]]
		}
		if c.svc == nil {
			c.svc = c.s.services[ec2InstanceConnectTarget]
		}
	}
}

// throttled takes a token from the caller's bucket: one per access key,
// and one per user for console sessions, which have no key.
func (c *call) throttled() error {
	key, what := c.principal.AccessKeyID, "access key "+c.principal.AccessKeyID
	if c.console {
		key, what = "console:"+c.principal.User.Name, "console user "+c.principal.User.Name
	}
	if c.s.throttle.allow(key, c.start) {
		return nil
	}
	c.s.cfg.Metrics.throttled.Inc()
	return postern.CodedErrorf(postern.KindThrottled, "ThrottlingException", "Rate exceeded for %s", what)
}

func (c *call) authenticate() error {
	p, err := c.s.auth.Authenticate(c.ctx, c.r, c.body, c.svc.signingName)
	if err != nil {
		return err
	}
	c.principal = p
	return nil
}

// authorize checks the caller's policies for action on resource and notes
// the resource and the decision for the audit record.
func (c *call) authorize(action, resource string, keys map[string][]string) error {
	if !strings.ContainsAny(resource, "*?") {
		c.addResource(resource)
	}
	d, err := c.s.auth.Authorize(c.ctx, c.principal, authority.Access{Action: action, Resource: resource, Context: keys}, c.env)
	if c.extra == nil {
		c.extra = map[string]any{}
	}
	decisions, _ := c.extra["policyDecisions"].([]map[string]any)
	c.extra["policyDecisions"] = append(decisions, map[string]any{
		"action": action, "resource": resource, "decision": d.Effect.String(),
		"policy": d.PolicyName, "sid": d.Sid,
	})
	return err
}

func (c *call) addResource(arn string) {
	for _, r := range c.resources {
		if r.ARN == arn {
			return
		}
	}
	c.resources = append(c.resources, audit.Resource{ARN: arn, AccountID: c.s.auth.Config().Account, Type: resourceType(arn)})
}

// resourceType names an ARN's CloudTrail resource type.
func resourceType(arn string) string {
	switch {
	case strings.Contains(arn, ":instance/"):
		return "AWS::EC2::Instance"
	case strings.Contains(arn, ":vpc/"):
		return "AWS::EC2::VPC"
	case strings.Contains(arn, ":subnet/"):
		return "AWS::EC2::Subnet"
	case strings.Contains(arn, ":user/"):
		return "AWS::IAM::User"
	case strings.Contains(arn, ":group/"):
		return "AWS::IAM::Group"
	case strings.Contains(arn, ":mfa/"):
		return "AWS::IAM::MFADevice"
	case strings.Contains(arn, ":instance-connect-endpoint/"):
		return "AWS::EC2::InstanceConnectEndpoint"
	case strings.Contains(arn, ":recording/"):
		return "Postern::Console::Recording"
	}
	return ""
}

// record writes the call's audit event.
func (c *call) record(callErr error) error {
	cfg := c.s.auth.Config()
	ev := &audit.Event{
		EventTime:           c.start.UTC(),
		EventName:           c.opName,
		AWSRegion:           cfg.Region,
		SourceIPAddress:     c.env.SourceIP.String(),
		UserAgent:           truncate(c.env.UserAgent, 512),
		RequestParameters:   c.params,
		ResponseElements:    c.response,
		AdditionalEventData: c.extra,
		RequestID:           c.id,
		ReadOnly:            c.op != nil && c.op.readOnly,
		Resources:           c.resources,
		EventType:           "AwsApiCall",
		RecipientAccountID:  cfg.Account,
	}
	if ev.EventName == "" {
		ev.EventName = "Unknown"
	}
	if c.svc != nil {
		ev.EventSource = c.svc.eventSource
	}
	if c.console {
		// Said the same way on every record, whatever the handler noted.
		extra := make(map[string]any, len(c.extra)+2)
		for k, v := range c.extra {
			extra[k] = v
		}
		extra["sessionType"] = "console"
		extra["mfaAuthenticated"] = c.env.MFA
		ev.AdditionalEventData = extra
	}
	if c.principal != nil {
		ev.UserIdentity = audit.UserIdentity{
			Type: "IAMUser", PrincipalID: c.principal.User.ID, ARN: c.principal.ARN,
			AccountID: cfg.Account, AccessKeyID: c.principal.AccessKeyID, UserName: c.principal.User.Name,
		}
	} else {
		// Whatever identity could be read, unverified.
		ev.UserIdentity = audit.UserIdentity{Type: "Unknown", AccountID: cfg.Account}
		if id := sigv4.Identify(c.r); id != "" {
			ev.UserIdentity.AccessKeyID = id
			ev.UserIdentity.UserName = c.s.auth.IdentifyKey(c.ctx, id)
		}
	}
	if callErr != nil {
		we := toWire(c.protocol(), callErr)
		ev.ErrorCode, ev.ErrorMessage = we.Code, we.Message
		ev.ResponseElements = nil
	}
	// The audit write must not be cut short by a client that hung up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
	defer cancel()
	_, err := c.s.cfg.Trail.Record(ctx, ev)
	return err
}

func (c *call) protocol() protocol {
	if c.svc != nil {
		return c.svc.proto
	}
	if c.r.Header.Get("X-Amz-Target") != "" {
		return protoJSON
	}
	return protoEC2Query
}

// render writes the response or the error and returns the status.
func (c *call) render(resp any, err error) int {
	p := c.protocol()
	if err != nil {
		we := toWire(p, err)
		switch p {
		case protoJSON:
			writeJSONError(c.w, we)
		case protoIAMQuery:
			writeIAMError(c.w, we, c.id)
		default:
			writeEC2Error(c.w, we, c.id)
		}
		return we.Status
	}
	switch p {
	case protoJSON:
		return writeJSON(c.w, resp)
	case protoIAMQuery:
		return writeIAMResponse(c.w, c.svc.xmlns, c.opName, resp, c.id)
	default:
		return writeEC2Response(c.w, c.svc.xmlns, c.opName, resp, c.id)
	}
}

// queryParams returns the Query parameters for the audit record, without
// the protocol's own fields.
func queryParams(form url.Values) map[string]any {
	m := make(map[string]any, len(form))
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "Action" || k == "Version" || strings.HasPrefix(k, "X-Amz-") {
			continue
		}
		v := form[k]
		if len(v) == 1 {
			m[k] = v[0]
		} else {
			m[k] = v
		}
	}
	return m
}

// SourceIP is the address a request came from (IPv4-mapped addresses
// unmapped), as audit records and aws:SourceIp see it.
func SourceIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// jsonProblem describes a JSON decoding error without echoing input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "field " + te.Field + " must be " + te.Type.String()
	}
	return "invalid JSON"
}
