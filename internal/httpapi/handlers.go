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
	return ReadVia(s, func(f ReadFields, _ record.Read) any { return f })
}

// ReadVia answers GET /read/{key} for layers whose reads also say where the record came
// from: answer adds the layer's fields, taken from the read's provenance, to the common
// ones. A missing key is answered with NotFound ("Key not found") and the provenance of the
// read that found nothing.
func ReadVia(s record.Store, answer func(ReadFields, record.Read) any) HandlerFunc {
	return func(r *http.Request) (any, error) {
		key, err := PathKey(r)
		if err != nil {
			return nil, err
		}
		read, err := record.ReadFrom(r.Context(), s, key)
		if errors.Is(err, record.ErrNotFound) {
			return answer(NotFound(key, MsgKeyNotFound), read), nil
		}
		if err != nil {
			return nil, err
		}
		return answer(Found(read.Record), read), nil
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
