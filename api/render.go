package api

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strconv"
)

const xmlHeader = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

func writeJSON(w http.ResponseWriter, v any) int {
	if v == nil {
		v = struct{}{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		writeJSONError(w, wireError{Code: "ServiceException", Message: "cannot encode the response", Status: 500})
		return 500
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	return http.StatusOK
}

func writeJSONError(w http.ResponseWriter, we wireError) {
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"Message"`
	}{we.Code, we.Message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", we.Code)
	w.WriteHeader(we.Status)
	w.Write(b)
}

func writeEC2Error(w http.ResponseWriter, we wireError, requestID string) {
	type errXML struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	v := struct {
		XMLName   xml.Name `xml:"Response"`
		Errors    []errXML `xml:"Errors>Error"`
		RequestID string   `xml:"RequestID"`
	}{Errors: []errXML{{we.Code, we.Message}}, RequestID: requestID}
	writeXML(w, we.Status, v)
}

func writeIAMError(w http.ResponseWriter, we wireError, requestID string) {
	typ := "Receiver"
	if we.Sender {
		typ = "Sender"
	}
	v := struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Xmlns   string   `xml:"xmlns,attr"`
		Error   struct {
			Type    string `xml:"Type"`
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		} `xml:"Error"`
		RequestID string `xml:"RequestId"`
	}{Xmlns: iamNamespace, RequestID: requestID}
	v.Error.Type, v.Error.Code, v.Error.Message = typ, we.Code, we.Message
	writeXML(w, we.Status, v)
}

// ec2Meta is embedded first in every EC2 response struct: the namespace
// and the request id that EC2 puts before the payload.
type ec2Meta struct {
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
}

func (m *ec2Meta) setMeta(ns, id string) { m.Xmlns, m.RequestID = ns, id }

type ec2Response interface{ setMeta(ns, id string) }

// writeEC2Response renders <ActionResponse xmlns=…><requestId/>…</…>.
func writeEC2Response(w http.ResponseWriter, ns, action string, resp any, requestID string) int {
	r, ok := resp.(ec2Response)
	if !ok {
		r = &struct{ ec2Meta }{}
	}
	r.setMeta(ns, requestID)
	var buf bytes.Buffer
	buf.WriteString(xmlHeader)
	if err := xml.NewEncoder(&buf).EncodeElement(r, xml.StartElement{Name: xml.Name{Local: action + "Response"}}); err != nil {
		writeEC2Error(w, wireError{Code: "InternalError", Message: "cannot encode the response", Status: 500}, requestID)
		return 500
	}
	return writeBytes(w, http.StatusOK, "text/xml;charset=UTF-8", buf.Bytes())
}

// writeIAMResponse renders <ActionResponse><ActionResult>…</ActionResult>
// <ResponseMetadata><RequestId/></ResponseMetadata></ActionResponse>.
func writeIAMResponse(w http.ResponseWriter, ns, action string, resp any, requestID string) int {
	var buf bytes.Buffer
	buf.WriteString(xmlHeader)
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: ns}}}
	ok := enc.EncodeToken(start) == nil
	if ok && resp != nil {
		ok = enc.EncodeElement(resp, xml.StartElement{Name: xml.Name{Local: action + "Result"}}) == nil
	}
	meta := struct {
		RequestID string `xml:"RequestId"`
	}{requestID}
	ok = ok && enc.EncodeElement(meta, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}}) == nil &&
		enc.EncodeToken(start.End()) == nil && enc.Flush() == nil
	if !ok {
		writeIAMError(w, wireError{Code: "ServiceFailure", Message: "cannot encode the response", Status: 500}, requestID)
		return 500
	}
	return writeBytes(w, http.StatusOK, "text/xml", buf.Bytes())
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		b = []byte("<Response><Errors><Error><Code>InternalError</Code></Error></Errors></Response>")
		status = 500
	}
	writeBytes(w, status, "text/xml;charset=UTF-8", append([]byte(xmlHeader), b...))
}

func writeBytes(w http.ResponseWriter, status int, contentType string, b []byte) int {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
	return status
}
