package tunnel

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// WriteHandshakeError refuses an OpenTunnel handshake the way AWS's
// endpoints do: an HTTP status, the request id in x-amzn-RequestId, and a
// JSON body {"ErrorCode": code, "Message": message}, with the code in
// x-amzn-ErrorType too. message is shown to the client and must hold no
// secret.
func WriteHandshakeError(w http.ResponseWriter, status int, code, message, requestID string) {
	body, _ := json.Marshal(struct {
		ErrorCode string
		Message   string
	}{code, message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("x-amzn-ErrorType", code)
	if requestID != "" {
		h.Set(RequestIDHeader, requestID)
	}
	w.WriteHeader(status)
	w.Write(body)
}
