package audit

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestIsSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"SecretAccessKey":      true,
		"secretAccessKey":      true,
		"clientSecret":         true,
		"Password":             true,
		"newPassword":          true,
		"passwd":               true,
		"PrivateKey":           true,
		"private_key":          true,
		"ssh-private-key":      true,
		"SessionToken":         true,
		"X-Amz-Security-Token": true,
		"accessToken":          true,
		"ActivationCode":       true,
		"activation_code":      true,
		"Credentials":          true,
		"X-Amz-Credential":     true,
		"Authorization":        true,
		"X-Amz-Signature":      true,
		"Cookie":               true,
		"passphrase":           true,
		"totpCode":             true,

		"credentialScope":     false, // names no secret; explains signature failures
		"CredentialScope":     false,
		"userName":            false,
		"accessKeyId":         false, // the id, not the secret
		"SSHPublicKey":        false,
		"instanceOSUser":      false,
		"policyDecisions":     false,
		"nextToken":           false, // paging, not a credential
		"signedHeaders":       false,
		"keySignatureVersion": false,
	} {
		if got := IsSecretName(name); got != want {
			t.Errorf("IsSecretName(%q) = %v, want %v", name, got, want)
		}
	}
}

type accessKeyView struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	Created         uint64 `json:"created"`
}

func TestRecordRedacts(t *testing.T) {
	tr, _, _ := newTestTrail(t, 0)
	params := map[string]any{
		"userName": "bob",
		"Password": "hunter2",
		"nested":   map[string]any{"deeper": map[string]any{"private_key": "-----BEGIN"}},
		"list":     []any{map[string]any{"SessionToken": "tok1"}, "plain", 3},
		"maps":     []map[string]any{{"activationCode": "act-1", "ok": "yes"}},
		"headers":  map[string]string{"Authorization": "AWS4-HMAC-SHA256 Signature=abc", "Host": "postern"},
		"raw":      json.RawMessage(`{"clientSecret":"raw-secret","n":12345678901234567890}`),
		"scope":    map[string]any{"credentialScope": "20260101/us-east-1/ec2/aws4_request"},
		"whole":    map[string]any{"password": map[string]any{"even": "a map"}},
	}
	response := map[string]any{
		"accessKey": accessKeyView{AccessKeyID: "AKIANEW", SecretAccessKey: "topsecret", Created: 1<<63 + 1},
	}
	extra := map[string]any{
		"policyDecisions": []map[string]any{{"action": "iam:CreateUser", "decision": "allowed"}},
		"credentials":     "creds",
	}
	paramsCopy := deepCopy(t, params)
	ev := &Event{EventName: "CreateAccessKey", RequestParameters: params, ResponseElements: response, AdditionalEventData: extra}
	rec, err := tr.Record(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	body := string(rec.Body)
	for _, leak := range []string{"hunter2", "-----BEGIN", "tok1", "act-1", "Signature=abc", "raw-secret", "topsecret", "a map", "creds"} {
		if strings.Contains(body, leak) {
			t.Errorf("the record leaks %q: %s", leak, body)
		}
	}
	var got struct {
		RequestParameters   map[string]any `json:"requestParameters"`
		ResponseElements    map[string]any `json:"responseElements"`
		AdditionalEventData map[string]any `json:"additionalEventData"`
	}
	if err := json.Unmarshal(rec.Body, &got); err != nil {
		t.Fatal(err)
	}
	wantParams := map[string]any{
		"userName": "bob",
		"Password": Redacted,
		"nested":   map[string]any{"deeper": map[string]any{"private_key": Redacted}},
		"list":     []any{map[string]any{"SessionToken": Redacted}, "plain", 3.0},
		"maps":     []any{map[string]any{"activationCode": Redacted, "ok": "yes"}},
		"headers":  map[string]any{"Authorization": Redacted, "Host": "postern"},
		"raw":      map[string]any{"clientSecret": Redacted, "n": 12345678901234567890.0},
		"scope":    map[string]any{"credentialScope": "20260101/us-east-1/ec2/aws4_request"},
		"whole":    map[string]any{"password": Redacted},
	}
	if !reflect.DeepEqual(got.RequestParameters, wantParams) {
		t.Errorf("requestParameters\n got %#v\nwant %#v", got.RequestParameters, wantParams)
	}
	if !strings.Contains(body, `"accessKey":{"accessKeyId":"AKIANEW","created":9223372036854775809,"secretAccessKey":"HIDDEN_DUE_TO_SECURITY_REASONS"}`) {
		t.Errorf("a struct value is not redacted, or its integer lost precision: %s", body)
	}
	if got.AdditionalEventData["credentials"] != Redacted || got.AdditionalEventData["policyDecisions"] == Redacted {
		t.Errorf("additionalEventData: %v", got.AdditionalEventData)
	}
	// The caller's maps are left alone.
	if !reflect.DeepEqual(params, paramsCopy) || ev.RequestParameters["Password"] != "hunter2" ||
		params["maps"].([]map[string]any)[0]["activationCode"] != "act-1" ||
		params["headers"].(map[string]string)["Authorization"] == Redacted {
		t.Error("Record changed the caller's map")
	}
	if response["accessKey"].(accessKeyView).SecretAccessKey != "topsecret" {
		t.Error("Record changed the caller's value")
	}
}

func TestRedactKeepsNil(t *testing.T) {
	tr, _, _ := newTestTrail(t, 0)
	rec, err := tr.Record(context.Background(), &Event{EventName: "X"})
	if err != nil {
		t.Fatal(err)
	}
	// CloudTrail writes null for absent parameters and omits absent extra data.
	if !strings.Contains(string(rec.Body), `"requestParameters":null,"responseElements":null,`) ||
		strings.Contains(string(rec.Body), "additionalEventData") {
		t.Errorf("body %s", rec.Body)
	}
}

func deepCopy(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case map[string]any:
			out[k] = deepCopy(t, v)
		case []any:
			out[k] = append([]any(nil), v...)
		default:
			out[k] = v
		}
	}
	return out
}

func FuzzRedact(f *testing.F) {
	f.Add(`{"password":"x","a":[{"SecretKey":1}],"b":{"c":"d"}}`)
	f.Add(`{"Credentials":{"SessionToken":"t"},"credentialScope":"s"}`)
	f.Fuzz(func(t *testing.T, in string) {
		var m map[string]any
		if json.Unmarshal([]byte(in), &m) != nil {
			return
		}
		out, err := redactMap(m)
		if err != nil {
			t.Fatal(err)
		}
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, e := range v {
					if IsSecretName(k) && e != Redacted {
						t.Fatalf("%q kept its value %v", k, e)
					}
					walk(e)
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			}
		}
		walk(out)
	})
}
