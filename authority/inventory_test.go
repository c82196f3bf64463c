package authority

import (
	"testing"

	"github.com/postern-dev/postern"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"web-*", "web-1", true},
		{"web-*", "db-1", false},
		{"w?b", "web", true},
		{"w?b", "wb", false},
		{"*-1", "a-b-1", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"10.0.*", "10.0.1.5", true},
		{"[x]", "x", false}, // no character classes
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for _, ok := range []string{"10.0.0.0/16", "192.168.4.0/24", "fd00:1::/48"} {
		if _, err := ParsePrefix("CidrBlock", ok, 8, 28, 32, 64); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1/16", "10.0.0.0/30", "10.0.0.0/4", "banana", "10.0.0.0", "fd00::/16"} {
		if _, err := ParsePrefix("CidrBlock", bad, 8, 28, 32, 64); !postern.IsKind(err, postern.KindInvalid) {
			t.Errorf("%s: err = %v, want invalid", bad, err)
		}
	}
}

func TestValidateTags(t *testing.T) {
	if err := ValidateTags([]postern.Tag{{Key: "Name", Value: "web-1"}, {Key: "env", Value: ""}}); err != nil {
		t.Fatal(err)
	}
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'x'
	}
	for name, tags := range map[string][]postern.Tag{
		"empty key":  {{Key: ""}},
		"reserved":   {{Key: "aws:createdBy", Value: "x"}},
		"long value": {{Key: "k", Value: string(long)}},
		"long key":   {{Key: string(long)}},
		"duplicate":  {{Key: "a"}, {Key: "a"}},
		"too many":   make([]postern.Tag, 51),
	} {
		if name == "too many" {
			for i := range tags {
				tags[i].Key = string(rune('A'+i%26)) + string(rune('a'+i/26))
			}
		}
		if err := ValidateTags(tags); !postern.IsKind(err, postern.KindInvalid) {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}

func TestFiltersCombine(t *testing.T) {
	vpcs := []postern.VPC{
		{ID: "vpc-1", CIDR: "10.0.0.0/16", Tags: []postern.Tag{{Key: "env", Value: "prod"}}},
		{ID: "vpc-2", CIDR: "10.1.0.0/16", Tags: []postern.Tag{{Key: "env", Value: "stage"}}},
		{ID: "vpc-3", CIDR: "10.2.0.0/16"},
	}
	fields := map[string]fieldFunc[postern.VPC]{
		"cidr": func(v *postern.VPC) []string { return []string{v.CIDR} },
	}
	tagsOf := func(v *postern.VPC) []postern.Tag { return v.Tags }
	run := func(filters ...postern.Filter) []string {
		m, err := compileFilters(filters, fields, tagsOf)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, v := range m.keep(append([]postern.VPC(nil), vpcs...)) {
			ids = append(ids, v.ID)
		}
		return ids
	}
	if got := run(postern.Filter{Name: "tag:env", Values: []string{"prod", "stage"}}); len(got) != 2 {
		t.Errorf("values OR: %v", got)
	}
	if got := run(postern.Filter{Name: "tag:env", Values: []string{"*"}}, postern.Filter{Name: "cidr", Values: []string{"10.1.*"}}); len(got) != 1 || got[0] != "vpc-2" {
		t.Errorf("filters AND: %v", got)
	}
	if got := run(postern.Filter{Name: "tag-key", Values: []string{"env"}}); len(got) != 2 {
		t.Errorf("tag-key: %v", got)
	}
	if _, err := compileFilters([]postern.Filter{{Name: "colour", Values: []string{"red"}}}, fields, tagsOf); !postern.IsKind(err, postern.KindInvalid) {
		t.Errorf("unknown filter: err = %v", err)
	}
}
