package policy

import (
	"fmt"
	"testing"
)

// ctx builds a request context from key, value, value, ..., key, ...
// pairs: each key starts with a '+' and the values follow it.
func ctx(kv ...string) map[string][]string {
	m := map[string][]string{}
	var key string
	for _, s := range kv {
		if len(s) > 0 && s[0] == '+' {
			key = s[1:]
			m[key] = []string{}
			continue
		}
		m[key] = append(m[key], s)
	}
	return m
}

// holds reports whether a statement with the given Condition block
// applies to a request with context c.
func holds(t *testing.T, version, condition string, c map[string][]string) bool {
	t.Helper()
	v := ""
	if version != "" {
		v = fmt.Sprintf(`"Version":%q,`, version)
	}
	doc := fmt.Sprintf(`{%s"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":%s}}`, v, condition)
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	return Evaluate([]NamedDocument{{Name: "p", Doc: d}}, Request{Action: "ec2:RunInstances", Resource: "*", Context: c}).Effect == Allow
}

func TestConditions(t *testing.T) {
	const (
		user  = "arn:aws:iam::123456789012:user/alice"
		inst  = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
		t2026 = "2026-01-01T00:00:00Z"
		epoch = "1767225600" // 2026-01-01T00:00:00Z
		b64   = "QmluYXJ5VmFsdWU="
	)
	type tc struct {
		cond string
		ctx  map[string][]string
		want bool
	}
	tests := map[string][]tc{
		"StringEquals": {
			{`{"StringEquals":{"ec2:osuser":"ec2-user"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringEquals":{"ec2:osuser":"ec2-user"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"StringEquals":{"ec2:osuser":"ec2-user"}}`, ctx("+ec2:osuser", "EC2-USER"), false},         // values are case-sensitive
			{`{"StringEquals":{"EC2:OSUser":"ec2-user"}}`, ctx("+ec2:osuser", "ec2-user"), true},          // keys are not
			{`{"StringEquals":{"ec2:osuser":"ec2-user"}}`, ctx("+EC2:OsUser", "ec2-user"), true},          // in the context either
			{`{"StringEquals":{"ec2:osuser":"ec2-*"}}`, ctx("+ec2:osuser", "ec2-user"), false},            // no wildcards
			{`{"StringEquals":{"ec2:osuser":"ec2-*"}}`, ctx("+ec2:osuser", "ec2-*"), true},                // '*' is literal
			{`{"StringEquals":{"ec2:osuser":["root","ec2-user"]}}`, ctx("+ec2:osuser", "ec2-user"), true}, // values OR'd
			{`{"StringEquals":{"ec2:osuser":"ec2-user"}}`, ctx(), false},
			{`{"StringEquals":{"ec2:osuser":"ec2-user"}}`, ctx("+ec2:osuser"), false}, // no values = absent
			{`{"StringEqualsIfExists":{"ec2:osuser":"ec2-user"}}`, ctx(), true},
			{`{"StringEqualsIfExists":{"ec2:osuser":"ec2-user"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"StringEqualsIfExists":{"ec2:osuser":"ec2-user"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringEquals":{"aws:tagkeys":"env"}}`, ctx("+aws:TagKeys", "owner", "env"), true}, // multi-valued: any
			{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys", "owner", "env"), true},
			{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys", "owner"), false},
			{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx(), false},
			{`{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":"env"}}`, ctx(), true},
			{`{"ForAllValues:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys", "env", "cost"), true},
			{`{"ForAllValues:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys", "env", "owner"), false},
			{`{"ForAllValues:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx(), true},
			{`{"ForAllValues:StringEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys"), true},
			{`{"StringEquals":{"aws:username":123}}`, ctx("+aws:username", "123"), true}, // JSON number
			{`{"StringEquals":{"aws:username":true}}`, ctx("+aws:username", "true"), true},
		},
		"StringNotEquals": {
			{`{"StringNotEquals":{"ec2:osuser":"root"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"StringNotEquals":{"ec2:osuser":"root"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringNotEquals":{"ec2:osuser":"root"}}`, ctx("+ec2:osuser", "ROOT"), true},
			{`{"StringNotEquals":{"ec2:osuser":"root"}}`, ctx(), true},                                  // absent: negated operators hold
			{`{"StringNotEquals":{"ec2:osuser":["root","admin"]}}`, ctx("+ec2:osuser", "admin"), false}, // values AND'd
			{`{"StringNotEquals":{"ec2:osuser":["root","admin"]}}`, ctx("+ec2:osuser", "ubuntu"), true},
			{`{"StringNotEqualsIfExists":{"ec2:osuser":"root"}}`, ctx(), true},
			{`{"StringNotEqualsIfExists":{"ec2:osuser":"root"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"StringNotEquals":{"aws:TagKeys":"env"}}`, ctx("+aws:TagKeys", "env", "x"), false}, // multi-valued: no value may match
			{`{"StringNotEquals":{"aws:TagKeys":"env"}}`, ctx("+aws:TagKeys", "y", "x"), true},
			{`{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"env"}}`, ctx("+aws:TagKeys", "env", "x"), true},
			{`{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"env"}}`, ctx("+aws:TagKeys", "env"), false},
			{`{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"env"}}`, ctx(), false},
			{`{"ForAllValues:StringNotEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys", "x", "y"), true},
			{`{"ForAllValues:StringNotEquals":{"aws:TagKeys":["env","cost"]}}`, ctx("+aws:TagKeys", "x", "cost"), false},
			{`{"ForAllValues:StringNotEquals":{"aws:TagKeys":["env","cost"]}}`, ctx(), true},
		},
		"StringEqualsIgnoreCase": {
			{`{"StringEqualsIgnoreCase":{"ec2:osuser":"EC2-User"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringEqualsIgnoreCase":{"ec2:osuser":"EC2-User"}}`, ctx("+ec2:osuser", "ec2-users"), false},
			{`{"StringEqualsIgnoreCase":{"ec2:osuser":"EC2-*"}}`, ctx("+ec2:osuser", "ec2-user"), false},
			{`{"StringEqualsIgnoreCase":{"ec2:osuser":"EC2-User"}}`, ctx(), false},
			{`{"StringEqualsIgnoreCaseIfExists":{"ec2:osuser":"EC2-User"}}`, ctx(), true},
			{`{"ForAllValues:StringEqualsIgnoreCase":{"aws:TagKeys":["Env","Cost"]}}`, ctx("+aws:TagKeys", "ENV", "cost"), true},
			{`{"ForAnyValue:StringEqualsIgnoreCase":{"aws:TagKeys":["Env"]}}`, ctx("+aws:TagKeys", "x", "ENV"), true},
		},
		"StringNotEqualsIgnoreCase": {
			{`{"StringNotEqualsIgnoreCase":{"ec2:osuser":"Root"}}`, ctx("+ec2:osuser", "ROOT"), false},
			{`{"StringNotEqualsIgnoreCase":{"ec2:osuser":"Root"}}`, ctx("+ec2:osuser", "ubuntu"), true},
			{`{"StringNotEqualsIgnoreCase":{"ec2:osuser":"Root"}}`, ctx(), true},
			{`{"StringNotEqualsIgnoreCaseIfExists":{"ec2:osuser":"Root"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"ForAllValues:StringNotEqualsIgnoreCase":{"aws:TagKeys":"Env"}}`, ctx("+aws:TagKeys", "a", "ENV"), false},
			{`{"ForAnyValue:StringNotEqualsIgnoreCase":{"aws:TagKeys":"Env"}}`, ctx("+aws:TagKeys", "a", "ENV"), true},
		},
		"StringLike": {
			{`{"StringLike":{"ec2:osuser":"ec2-*"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringLike":{"ec2:osuser":"ec2-*"}}`, ctx("+ec2:osuser", "EC2-user"), false},
			{`{"StringLike":{"ec2:osuser":"ec2-????"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringLike":{"ec2:osuser":"ec2-???"}}`, ctx("+ec2:osuser", "ec2-user"), false},
			{`{"StringLike":{"ec2:osuser":"*"}}`, ctx("+ec2:osuser", ""), true},
			{`{"StringLike":{"ec2:osuser":"*"}}`, ctx(), false},
			{`{"StringLikeIfExists":{"ec2:osuser":"ec2-*"}}`, ctx(), true},
			{`{"StringLikeIfExists":{"ec2:osuser":"ec2-*"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"StringLike":{"aws:TagKeys":"team-*"}}`, ctx("+aws:TagKeys", "x", "team-a"), true},
			{`{"ForAllValues:StringLike":{"aws:TagKeys":"team-*"}}`, ctx("+aws:TagKeys", "team-b", "team-a"), true},
			{`{"ForAllValues:StringLike":{"aws:TagKeys":"team-*"}}`, ctx("+aws:TagKeys", "x", "team-a"), false},
			{`{"ForAnyValue:StringLike":{"aws:TagKeys":"team-*"}}`, ctx("+aws:TagKeys", "x", "team-a"), true},
			{`{"ForAnyValue:StringLike":{"aws:TagKeys":"team-*"}}`, ctx(), false},
		},
		"StringNotLike": {
			{`{"StringNotLike":{"ec2:osuser":"*root*"}}`, ctx("+ec2:osuser", "xrootx"), false},
			{`{"StringNotLike":{"ec2:osuser":"*root*"}}`, ctx("+ec2:osuser", "ubuntu"), true},
			{`{"StringNotLike":{"ec2:osuser":["r*","a*"]}}`, ctx("+ec2:osuser", "admin"), false},
			{`{"StringNotLike":{"ec2:osuser":"*root*"}}`, ctx(), true},
			{`{"StringNotLikeIfExists":{"ec2:osuser":"*root*"}}`, ctx("+ec2:osuser", "root"), false},
			{`{"ForAllValues:StringNotLike":{"aws:TagKeys":"sys*"}}`, ctx("+aws:TagKeys", "a", "b"), true},
			{`{"ForAnyValue:StringNotLike":{"aws:TagKeys":"sys*"}}`, ctx("+aws:TagKeys", "sys1", "sys2"), false},
		},
		"Numeric": {
			{`{"NumericEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "10"), true},
			{`{"NumericEquals":{"s3:max-keys":10}}`, ctx("+s3:max-keys", "10.0"), true},
			{`{"NumericEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "11"), false},
			{`{"NumericEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "ten"), false},
			{`{"NumericEquals":{"s3:max-keys":"10"}}`, ctx(), false},
			{`{"NumericEqualsIfExists":{"s3:max-keys":"10"}}`, ctx(), true},
			{`{"NumericEquals":{"s3:max-keys":["5","10"]}}`, ctx("+s3:max-keys", "5"), true},
			{`{"NumericNotEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "11"), true},
			{`{"NumericNotEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "10"), false},
			{`{"NumericNotEquals":{"s3:max-keys":["5","10"]}}`, ctx("+s3:max-keys", "5"), false},
			{`{"NumericNotEquals":{"s3:max-keys":"10"}}`, ctx(), true},
			{`{"NumericNotEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "NaN"), false}, // bad value never passes
			{`{"NumericNotEqualsIfExists":{"s3:max-keys":"10"}}`, ctx(), true},
			{`{"NumericLessThan":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "9.5"), true},
			{`{"NumericLessThan":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "10"), false},
			{`{"NumericLessThan":{"s3:max-keys":"10"}}`, ctx(), false},
			{`{"NumericLessThanIfExists":{"s3:max-keys":"10"}}`, ctx(), true},
			{`{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "10"), true},
			{`{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx("+s3:max-keys", "10.01"), false},
			{`{"NumericLessThanEqualsIfExists":{"s3:max-keys":"10"}}`, ctx(), true},
			{`{"NumericGreaterThan":{"s3:max-keys":"-1"}}`, ctx("+s3:max-keys", "0"), true},
			{`{"NumericGreaterThan":{"s3:max-keys":"1e3"}}`, ctx("+s3:max-keys", "1000"), false},
			{`{"NumericGreaterThanIfExists":{"s3:max-keys":"1"}}`, ctx("+s3:max-keys", "x"), false},
			{`{"NumericGreaterThanEquals":{"s3:max-keys":"1000"}}`, ctx("+s3:max-keys", "1e3"), true},
			{`{"NumericGreaterThanEquals":{"s3:max-keys":"1000"}}`, ctx("+s3:max-keys", "999"), false},
			{`{"NumericGreaterThanEqualsIfExists":{"s3:max-keys":"1"}}`, ctx(), true},
			{`{"ForAnyValue:NumericLessThan":{"x:n":"3"}}`, ctx("+x:n", "5", "2"), true},
			{`{"ForAllValues:NumericLessThan":{"x:n":"3"}}`, ctx("+x:n", "5", "2"), false},
			{`{"ForAllValues:NumericLessThan":{"x:n":"3"}}`, ctx("+x:n", "1", "2"), true},
			{`{"ForAllValues:NumericLessThan":{"x:n":"3"}}`, ctx("+x:n", "1", "bad"), false},
			{`{"ForAllValues:NumericLessThan":{"x:n":"3"}}`, ctx(), true},
			{`{"ForAnyValue:NumericLessThan":{"x:n":"3"}}`, ctx(), false},
		},
		"Date": {
			{`{"DateEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", t2026), true},
			{`{"DateEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", "2026-01-01T01:00:00+01:00"), true},
			{`{"DateEquals":{"aws:CurrentTime":"2026-01-01"}}`, ctx("+aws:CurrentTime", t2026), true},
			{`{"DateEquals":{"aws:EpochTime":"` + t2026 + `"}}`, ctx("+aws:EpochTime", epoch), true},
			{`{"DateEquals":{"aws:CurrentTime":` + epoch + `}}`, ctx("+aws:CurrentTime", t2026), true},
			{`{"DateEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", "2026-01-01T00:00:01Z"), false},
			{`{"DateEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", "yesterday"), false},
			{`{"DateEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), false},
			{`{"DateEqualsIfExists":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), true},
			{`{"DateNotEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", "2025-01-01T00:00:00Z"), true},
			{`{"DateNotEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", t2026), false},
			{`{"DateNotEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), true},
			{`{"DateNotEquals":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", "soon"), false},
			{`{"DateNotEqualsIfExists":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), true},
			{`{"DateLessThan":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", "2025-12-31T23:59:59Z"), true},
			{`{"DateLessThan":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx("+aws:CurrentTime", t2026), false},
			{`{"DateLessThan":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), false},
			{`{"DateLessThanIfExists":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), true},
			{`{"DateLessThanEquals":{"aws:EpochTime":"` + epoch + `"}}`, ctx("+aws:EpochTime", epoch), true},
			{`{"DateLessThanEquals":{"aws:EpochTime":"` + epoch + `"}}`, ctx("+aws:EpochTime", "1767225600.5"), false},
			{`{"DateLessThanEqualsIfExists":{"aws:EpochTime":"` + epoch + `"}}`, ctx(), true},
			{`{"DateGreaterThan":{"aws:CurrentTime":"2025-06-01T12:00:00.5Z"}}`, ctx("+aws:CurrentTime", "2025-06-01T12:00:00.6Z"), true},
			{`{"DateGreaterThan":{"aws:CurrentTime":"2025-06-01T12:00:00.5Z"}}`, ctx("+aws:CurrentTime", "2025-06-01T12:00:00.5Z"), false},
			{`{"DateGreaterThanIfExists":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), true},
			{`{"DateGreaterThanEquals":{"aws:CurrentTime":"2025-06-01T12:00"}}`, ctx("+aws:CurrentTime", "2025-06-01T12:00:00Z"), true},
			{`{"DateGreaterThanEquals":{"aws:CurrentTime":"2025-06-01T12:00"}}`, ctx("+aws:CurrentTime", "2025-06-01T11:59:59Z"), false},
			{`{"DateGreaterThanEqualsIfExists":{"aws:CurrentTime":"` + t2026 + `"}}`, ctx(), true},
			{`{"ForAnyValue:DateLessThan":{"x:d":"` + t2026 + `"}}`, ctx("+x:d", "2027-01-01", "2025-01-01"), true},
			{`{"ForAllValues:DateLessThan":{"x:d":"` + t2026 + `"}}`, ctx("+x:d", "2027-01-01", "2025-01-01"), false},
		},
		"Bool": {
			{`{"Bool":{"aws:MultiFactorAuthPresent":"true"}}`, ctx("+aws:MultiFactorAuthPresent", "true"), true},
			{`{"Bool":{"aws:MultiFactorAuthPresent":true}}`, ctx("+aws:multifactorauthpresent", "TRUE"), true},
			{`{"Bool":{"aws:MultiFactorAuthPresent":"true"}}`, ctx("+aws:MultiFactorAuthPresent", "false"), false},
			{`{"Bool":{"aws:MultiFactorAuthPresent":"true"}}`, ctx("+aws:MultiFactorAuthPresent", "yes"), false},
			{`{"Bool":{"aws:MultiFactorAuthPresent":"false"}}`, ctx(), false}, // IAM's well-known trap
			{`{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}`, ctx(), true},
			{`{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}`, ctx("+aws:MultiFactorAuthPresent", "true"), false},
			{`{"ForAllValues:Bool":{"x:b":"true"}}`, ctx("+x:b", "true", "false"), false},
			{`{"ForAnyValue:Bool":{"x:b":"true"}}`, ctx("+x:b", "true", "false"), true},
		},
		"BinaryEquals": {
			{`{"BinaryEquals":{"x:bin":"` + b64 + `"}}`, ctx("+x:bin", b64), true},
			{`{"BinaryEquals":{"x:bin":"` + b64 + `"}}`, ctx("+x:bin", "QmluYXJ5VmFsdWUh"), false},
			{`{"BinaryEquals":{"x:bin":"` + b64 + `"}}`, ctx("+x:bin", "!!"), false},
			{`{"BinaryEquals":{"x:bin":"` + b64 + `"}}`, ctx(), false},
			{`{"BinaryEqualsIfExists":{"x:bin":"` + b64 + `"}}`, ctx(), true},
			{`{"ForAnyValue:BinaryEquals":{"x:bin":"` + b64 + `"}}`, ctx("+x:bin", "AA==", b64), true},
		},
		"IpAddress": {
			{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "10.1.2.3"), true},
			{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "11.1.2.3"), false},
			{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "::ffff:10.1.2.3"), true},
			{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "not-an-ip"), false},
			{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx(), false},
			{`{"IpAddress":{"aws:SourceIp":"203.0.113.7"}}`, ctx("+aws:SourceIp", "203.0.113.7"), true},
			{`{"IpAddress":{"aws:SourceIp":"203.0.113.7"}}`, ctx("+aws:SourceIp", "203.0.113.8"), false},
			{`{"IpAddress":{"aws:SourceIp":"10.9.8.7/24"}}`, ctx("+aws:SourceIp", "10.9.8.1"), true}, // host bits ignored
			{`{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}`, ctx("+aws:SourceIp", "2001:db8:1::5"), true},
			{`{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx("+aws:SourceIp", "2001:db9::1"), false},
			{`{"IpAddress":{"aws:SourceIp":"::ffff:10.0.0.0/104"}}`, ctx("+aws:SourceIp", "10.2.3.4"), true},
			{`{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx(), true},
			{`{"ForAllValues:IpAddress":{"x:ips":"10.0.0.0/8"}}`, ctx("+x:ips", "10.0.0.1", "10.0.0.2"), true},
			{`{"ForAllValues:IpAddress":{"x:ips":"10.0.0.0/8"}}`, ctx("+x:ips", "10.0.0.1", "8.8.8.8"), false},
		},
		"NotIpAddress": {
			{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "8.8.8.8"), true},
			{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "10.0.0.1"), false},
			{`{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.0.0/16"]}}`, ctx("+aws:SourceIp", "192.168.1.1"), false},
			{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx(), true},
			{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "bogus"), false},
			{`{"NotIpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx(), true},
			{`{"NotIpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("+aws:SourceIp", "10.0.0.1"), false},
			{`{"ForAnyValue:NotIpAddress":{"x:ips":"10.0.0.0/8"}}`, ctx("+x:ips", "10.0.0.1", "8.8.8.8"), true},
		},
		"Arn": {
			{`{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/*"}}`, ctx("+aws:PrincipalArn", user), true},
			{`{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::210987654321:user/*"}}`, ctx("+aws:PrincipalArn", user), false},
			{`{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/alice"}}`, ctx("+aws:PrincipalArn", "arn:aws:iam::1:2:user/alice"), false}, // '*' stays within its component
			{`{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::bucket*"}}`, ctx("+aws:SourceArn", "arn:aws:s3:::bucket:x"), true},                   // the resource may hold ':'
			{`{"ArnLike":{"aws:SourceArn":"arn:aws:ec2:us-????-1:*:instance/*"}}`, ctx("+aws:SourceArn", inst), true},
			{`{"ArnLike":{"aws:SourceArn":"arn:aws:ec2:*:*:instance/*"}}`, ctx("+aws:SourceArn", "arn:aws:ec2:us-east-1:123456789012:INSTANCE/i-1"), false},
			{`{"ArnLike":{"aws:SourceArn":"arn:aws:ec2:*:*:instance/*"}}`, ctx("+aws:SourceArn", "i-0123"), false},
			{`{"ArnLike":{"aws:SourceArn":"*"}}`, ctx("+aws:SourceArn", inst), true},
			{`{"ArnLike":{"aws:SourceArn":"arn:aws:ec2:*:*:instance/*"}}`, ctx(), false},
			{`{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:ec2:*:*:instance/*"}}`, ctx(), true},
			{`{"ArnEquals":{"aws:SourceArn":"` + inst + `"}}`, ctx("+aws:SourceArn", inst), true},
			{`{"ArnEquals":{"aws:SourceArn":"arn:aws:ec2:*:123456789012:instance/*"}}`, ctx("+aws:SourceArn", inst), true},
			{`{"ArnEquals":{"aws:SourceArn":"` + inst + `"}}`, ctx("+aws:SourceArn", user), false},
			{`{"ArnEqualsIfExists":{"aws:SourceArn":"` + inst + `"}}`, ctx(), true},
			{`{"ArnNotEquals":{"aws:SourceArn":"` + inst + `"}}`, ctx("+aws:SourceArn", user), true},
			{`{"ArnNotEquals":{"aws:SourceArn":"` + inst + `"}}`, ctx("+aws:SourceArn", inst), false},
			{`{"ArnNotEquals":{"aws:SourceArn":"` + inst + `"}}`, ctx(), true},
			{`{"ArnNotEquals":{"aws:SourceArn":"` + inst + `"}}`, ctx("+aws:SourceArn", "garbage"), false},
			{`{"ArnNotEqualsIfExists":{"aws:SourceArn":"` + inst + `"}}`, ctx(), true},
			{`{"ArnNotLike":{"aws:SourceArn":"arn:aws:iam::*:*"}}`, ctx("+aws:SourceArn", inst), true},
			{`{"ArnNotLike":{"aws:SourceArn":"arn:aws:iam::*:*"}}`, ctx("+aws:SourceArn", user), false},
			{`{"ArnNotLike":{"aws:SourceArn":"arn:aws:iam::*:*"}}`, ctx(), true},
			{`{"ArnNotLikeIfExists":{"aws:SourceArn":"arn:aws:iam::*:*"}}`, ctx("+aws:SourceArn", user), false},
			{`{"ForAllValues:ArnLike":{"x:arns":"arn:aws:iam::*:user/*"}}`, ctx("+x:arns", user, inst), false},
			{`{"ForAnyValue:ArnLike":{"x:arns":"arn:aws:iam::*:user/*"}}`, ctx("+x:arns", user, inst), true},
			{`{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/${aws:username}"}}`, ctx("+aws:PrincipalArn", user, "+aws:username", "alice"), true},
			{`{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/${aws:username}"}}`, ctx("+aws:PrincipalArn", user, "+aws:username", "bob"), false},
			{`{"ArnEquals":{"aws:SourceArn":"${aws:PrincipalArn}"}}`, ctx("+aws:SourceArn", user, "+aws:PrincipalArn", user), true},
		},
		"Null": {
			{`{"Null":{"aws:TokenIssueTime":"true"}}`, ctx(), true},
			{`{"Null":{"aws:TokenIssueTime":"true"}}`, ctx("+aws:TokenIssueTime", "x"), false},
			{`{"Null":{"aws:TokenIssueTime":"true"}}`, ctx("+aws:TokenIssueTime"), true},
			{`{"Null":{"aws:TokenIssueTime":false}}`, ctx("+aws:TokenIssueTime", "x"), true},
			{`{"Null":{"aws:TokenIssueTime":"false"}}`, ctx(), false},
		},
		"combined": {
			// Operators AND, keys under an operator AND.
			{`{"StringEquals":{"ec2:osuser":"u","aws:username":"alice"},"Bool":{"aws:SecureTransport":"true"}}`, ctx("+ec2:osuser", "u", "+aws:username", "alice", "+aws:SecureTransport", "true"), true},
			{`{"StringEquals":{"ec2:osuser":"u","aws:username":"alice"},"Bool":{"aws:SecureTransport":"true"}}`, ctx("+ec2:osuser", "u", "+aws:username", "bob", "+aws:SecureTransport", "true"), false},
			{`{"StringEquals":{"ec2:osuser":"u","aws:username":"alice"},"Bool":{"aws:SecureTransport":"true"}}`, ctx("+ec2:osuser", "u", "+aws:username", "alice", "+aws:SecureTransport", "false"), false},
			// The same key twice, differing in case: both must hold.
			{`{"StringLike":{"ec2:osuser":"e*","EC2:OSUSER":"*r"}}`, ctx("+ec2:osuser", "ec2-user"), true},
			{`{"StringLike":{"ec2:osuser":"e*","EC2:OSUSER":"*x"}}`, ctx("+ec2:osuser", "ec2-user"), false},
			{`{}`, ctx(), true},
			{`{"StringEquals":{}}`, ctx(), true},
		},
		"variables": {
			{`{"StringEquals":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "alice", "+aws:username", "alice"), true},
			{`{"StringEquals":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "bob", "+aws:username", "alice"), false},
			{`{"StringEquals":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", ""), false},                // absent variable: no match
			{`{"StringEquals":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "${aws:username}"), false}, // not literal either
			{`{"StringEquals":{"ec2:osuser":"${AWS:UserName}"}}`, ctx("+ec2:osuser", "alice", "+aws:username", "alice"), true},
			{`{"StringEquals":{"ec2:osuser":"${aws:username, 'nobody'}"}}`, ctx("+ec2:osuser", "nobody"), true},
			{`{"StringEquals":{"ec2:osuser":"${aws:username,'nobody'}"}}`, ctx("+ec2:osuser", "alice", "+aws:username", "alice"), true},
			{`{"StringEquals":{"ec2:osuser":"${ aws:username , 'it''s' }"}}`, ctx("+ec2:osuser", "it's"), true},
			{`{"StringEquals":{"x:k":"${x:multi}"}}`, ctx("+x:k", "a", "+x:multi", "a", "b"), false}, // multi-valued: not a variable
			{`{"StringEquals":{"x:k":"${x:multi, 'd'}"}}`, ctx("+x:k", "d", "+x:multi", "a", "b"), true},
			{`{"StringLike":{"ec2:osuser":"${aws:username}-*"}}`, ctx("+ec2:osuser", "alice-admin", "+aws:username", "alice"), true},
			{`{"StringLike":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "alice", "+aws:username", "a*"), false}, // substituted '*' is literal
			{`{"StringLike":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "a*", "+aws:username", "a*"), true},
			{`{"StringEqualsIgnoreCase":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "ALICE", "+aws:username", "alice"), true},
			{`{"StringLike":{"x:k":"a${*}b${?}c${$}"}}`, ctx("+x:k", "a*b?c$"), true},
			{`{"StringLike":{"x:k":"a${*}b"}}`, ctx("+x:k", "axb"), false},
			{`{"StringNotEquals":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "root", "+aws:username", "alice"), true},
			{`{"StringNotEquals":{"ec2:osuser":"${aws:username}"}}`, ctx("+ec2:osuser", "alice", "+aws:username", "alice"), false},
			{`{"NumericEquals":{"x:n":"1"}}`, ctx("+x:n", "1"), true},
		},
	}
	for name, cases := range tests {
		for i, c := range cases {
			t.Run(fmt.Sprintf("%s/%d", name, i), func(t *testing.T) {
				if got := holds(t, Version2012, c.cond, c.ctx); got != c.want {
					t.Errorf("condition %s with context %v: got %v, want %v", c.cond, c.ctx, got, c.want)
				}
			})
		}
	}
}

// Before 2012-10-17, "${...}" is literal text.
func TestConditionVariablesOldVersion(t *testing.T) {
	for _, version := range []string{Version2008, ""} {
		cond := `{"StringEquals":{"ec2:osuser":"${aws:username}"}}`
		if !holds(t, version, cond, ctx("+ec2:osuser", "${aws:username}")) {
			t.Errorf("version %q: literal ${aws:username} did not match", version)
		}
		if holds(t, version, cond, ctx("+ec2:osuser", "alice", "+aws:username", "alice")) {
			t.Errorf("version %q: ${aws:username} was substituted", version)
		}
		if !holds(t, version, `{"StringLike":{"x:k":"a${*}"}}`, ctx("+x:k", "a${anything}")) {
			t.Errorf("version %q: ${*} was an escape", version)
		}
	}
}

func TestParseValues(t *testing.T) {
	dates := map[string]string{ // input → RFC 3339 in UTC, or "" when invalid
		"2026-01-31":                "2026-01-31T00:00:00Z",
		"2026-01-31T12:30":          "2026-01-31T12:30:00Z",
		"2026-01-31T12:30+02:00":    "2026-01-31T10:30:00Z",
		"2026-01-31T12:30:05":       "2026-01-31T12:30:05Z",
		"2026-01-31T12:30:05.25":    "2026-01-31T12:30:05.25Z",
		"2026-01-31T12:30:05.25Z":   "2026-01-31T12:30:05.25Z",
		"2026-01-31T12:30:05-05:00": "2026-01-31T17:30:05Z",
		" 2026-01-31 ":              "2026-01-31T00:00:00Z",
		"0":                         "1970-01-01T00:00:00Z",
		"1767225600":                "2026-01-01T00:00:00Z",
		"1767225600.5":              "2026-01-01T00:00:00.5Z",
		"-1.5":                      "1969-12-31T23:59:58.5Z",
		"-0.5":                      "1969-12-31T23:59:59.5Z",
		"":                          "",
		"-":                         "",
		"1.":                        "",
		".5":                        "",
		"1e9":                       "",
		"99999999999999999999":      "",
		"2026-02-30":                "",
		"31/01/2026":                "",
	}
	for in, want := range dates {
		got, ok := parseDate(in)
		if s := got.UTC().Format("2006-01-02T15:04:05.999999999Z07:00"); ok != (want != "") || ok && s != want {
			t.Errorf("parseDate(%q) = %s, %v; want %q", in, s, ok, want)
		}
	}
	for in, want := range map[string]bool{"1": true, "-2.5": true, "1e3": true, " 7 ": true, "": false, "NaN": false, "Inf": false, "-Infinity": false, "0x1p3": false, "1_000": false, "1e999": false} {
		if _, ok := parseNumber(in); ok != want {
			t.Errorf("parseNumber(%q): ok = %v, want %v", in, ok, want)
		}
	}
	for in, want := range map[string]string{
		"10.0.0.1":            "10.0.0.1/32",
		"10.1.2.3/8":          "10.0.0.0/8",
		"2001:db8::1":         "2001:db8::1/128",
		"2001:db8::1/32":      "2001:db8::/32",
		"::ffff:10.0.0.1":     "10.0.0.1/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"fe80::1%eth0":        "",
		"10.0.0.0/33":         "",
		"host":                "",
	} {
		got, ok := parsePrefix(in)
		if ok != (want != "") || ok && got.String() != want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %q", in, got, ok, want)
		}
	}
}
