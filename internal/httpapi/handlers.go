package httpapi

import (
	"errors"
	"net/http"

	"github.com/dblayers/dblayers/internal/record"
)

// WriteHandler answers POST /write by storing the record through s and replying with
// message (e.g. "Data written successfully").
func WriteHandler(s record.Store, message string) HandlerFunc {
	return func(r *http.Request) (any, error) {
		req, _, err := DecodeWrite(r)
		if err != nil {
			return nil, err
		}
		if err := s.Put(r.Context(), req.Key, req.Value); err != nil {
			return nil, err
		}
		return WriteResponse{Success: true, Key: req.Key, Message: message}, nil
	}
}

// ReadHandler answers GET /read/{key} from s; a missing key is 200 with success false.
func ReadHandler(s record.Store) HandlerFunc {
	return func(r *http.Request) (any, error) {
		key, err := PathKey(r)
		if err != nil {
			return nil, err
		}
		rec, err := s.Get(r.Context(), key)
		if errors.Is(err, record.ErrNotFound) {
			return NotFound(key, MsgKeyNotFound), nil
		}
		if err != nil {
			return nil, err
		}
		return Found(rec), nil
	}
}

// Unhealthy is the 503 of a failed health check. The cause goes to the log, not the client.
func Unhealthy(detail string, cause error) error {
	return &unhealthyError{detail: detail, cause: cause}
}

type unhealthyError struct {
	detail string
	cause  error
}

func (e *unhealthyError) Error() string { return e.detail + ": " + e.cause.Error() }
func (e *unhealthyError) Unwrap() error { return e.cause }
