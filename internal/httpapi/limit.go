package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// After a 413, up to drainBytes of what the client is still sending are read and thrown
// away, for at most drainTimeout, before net/http closes the connection (see discardRest).
const (
	drainBytes   = 16 << 20
	drainTimeout = 5 * time.Second
)

// limit bounds request bodies at l.MaxBodyBytes. A declared Content-Length over the limit
// is answered 413 before a byte is read, so a client that sent "Expect: 100-continue" gets
// the 413 instead of "100 Continue"; a body that crosses the limit while it is read (chunked)
// is answered 413 by the handler that reads it. Either way the client then reads its 413,
// not a reset connection (discardRest).
func limit(l Limits) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r = r.WithContext(context.WithValue(r.Context(), limitsKey, l))
			if l.MaxBodyBytes <= 0 || r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r)
				return
			}
			raw := r.Body
			if r.ContentLength > l.MaxBodyBytes {
				WriteError(w, r, bodyTooLarge(l.MaxBodyBytes))
				discardRest(w, raw)
				return
			}
			// MaxBytesReader is given net/http's own ResponseWriter, not the access log's
			// wrapper around it: only then does it mark the connection to be closed after
			// the answer, with net/http's lingering close.
			body := &limitedBody{ReadCloser: http.MaxBytesReader(unwrap(w), raw, l.MaxBodyBytes)}
			r.Body = body
			next.ServeHTTP(w, r)
			if body.over {
				discardRest(w, raw)
			}
		})
	}
}

func bodyTooLarge(limit int64) error {
	return &tooLargeError{fmt.Sprintf("Request body exceeds the limit of %d bytes", limit)}
}

// limitedBody notes whether its reader hit the body limit.
type limitedBody struct {
	io.ReadCloser
	over bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.over = true
	}
	return n, err
}

// discardRest sends the 413 already written to w, then reads and discards what the client
// is still sending of body, within drainBytes and drainTimeout. Closing a connection with
// unread data makes the kernel send a reset, which can reach the client before it has read
// the 413 (seen as "100 Continue" then a reset on a busy machine); once the client's bytes
// are read the close is a clean one. A client that waits for "100 Continue" sends nothing
// and closes on the 413, which ends the read at once; the final answer has been written,
// so reading no longer sends "100 Continue".
func discardRest(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.CopyN(io.Discard, body, drainBytes)
}

// unwrap returns the ResponseWriter that middleware wrappers (Unwrap) sit on.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

func limitsFrom(ctx context.Context) Limits {
	l, _ := ctx.Value(limitsKey).(Limits)
	return l
}
