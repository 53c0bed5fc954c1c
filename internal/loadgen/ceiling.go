package loadgen

import (
	"io"
	"net/http"
	"strconv"
)

// CeilingBody is the ceiling server's answer: the shape and size (about 120 bytes) of a
// layer's read answer for a found key.
const CeilingBody = `{"success":true,"key":"hot","value":"ceiling","created_at":"2025-01-01T00:00:00.000000",` +
	`"updated_at":"2025-01-01T00:00:00.000000","message":null}`

var ceilingLength = strconv.Itoa(len(CeilingBody))

// CeilingHandler answers every request with 200 and CeilingBody, after reading the request
// body: the least work an HTTP handler can do, so a server running it shows the upper bound
// of requests per second any layer could reach on the same machine and HTTP stack.
func CeilingHandler() http.Handler {
	body := []byte(CeilingBody)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{ceilingLength}
		_, _ = w.Write(body)
	})
}
