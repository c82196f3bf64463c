package api

import (
	"net/url"
	"reflect"
	"testing"

	"github.com/postern-dev/postern"
)

func queryCall(t *testing.T, raw string) *call {
	t.Helper()
	form, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &call{form: form, svc: &service{proto: protoEC2Query}}
}

func TestQueryListsAreOrderedByIndexNotByText(t *testing.T) {
	c := queryCall(t, "InstanceId.10=i-c&InstanceId.2=i-b&InstanceId.1=i-a")
	got, err := c.list("InstanceId")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"i-a", "i-b", "i-c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("list = %v, want %v", got, want)
	}
	if _, err := queryCall(t, "InstanceId.x=1").list("InstanceId"); !postern.IsKind(err, postern.KindInvalid) {
		t.Errorf("non-numeric index: err = %v", err)
	}
}

func TestQueryFiltersAndTags(t *testing.T) {
	c := queryCall(t, "Filter.1.Name=tag:env&Filter.1.Value.1=prod&Filter.1.Value.2=stage&Filter.2.Name=vpc-id&Filter.2.Value.1=vpc-1"+
		"&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=lab"+
		"&Tag.1.Key=a&Tag.2.Key=b&Tag.2.Value=")
	f, err := c.filters()
	if err != nil {
		t.Fatal(err)
	}
	want := []postern.Filter{{Name: "tag:env", Values: []string{"prod", "stage"}}, {Name: "vpc-id", Values: []string{"vpc-1"}}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("filters = %v, want %v", f, want)
	}
	tags, err := c.tagSpecifications("vpc")
	if err != nil || !reflect.DeepEqual(tags, []postern.Tag{{Key: "Name", Value: "lab"}}) {
		t.Errorf("tagSpecifications = %v, %v", tags, err)
	}
	if _, err := c.tagSpecifications("subnet"); err == nil {
		t.Error("a vpc tag specification was accepted for a subnet")
	}
	sel, err := c.tagSelectors("Tag")
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) != 2 || sel[0].Value != nil || sel[1].Value == nil || *sel[1].Value != "" {
		t.Errorf("selectors: absent value must match any, present empty value must match empty: %+v", sel)
	}
	if _, err := queryCall(t, "Filter.1.Value.1=x").filters(); err == nil {
		t.Error("a filter without a name was accepted")
	}
}

func TestQueryParamsLeaveOutProtocolFields(t *testing.T) {
	form, _ := url.ParseQuery("Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16&X-Amz-Signature=abc&ResourceId.1=a&ResourceId.2=b")
	got := queryParams(form)
	want := map[string]any{"CidrBlock": "10.0.0.0/16", "ResourceId.1": "a", "ResourceId.2": "b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("queryParams = %v, want %v", got, want)
	}
}
