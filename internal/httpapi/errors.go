package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/dblayers/dblayers/internal/record"
)

// Error is an error with a status code and a client-facing detail, for the cases a handler
// decides itself (401, 429, 400 …). Detail is sent as {"detail": Detail}.
type Error struct {
	Status int
	Detail string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Detail) }

// Errorf builds an *Error.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Detail: fmt.Sprintf(format, args...)}
}

// FieldError is one entry of a 422 body, in the original's pydantic shape.
type FieldError struct {
	Type  string         `json:"type"`
	Loc   []any          `json:"loc"`
	Msg   string         `json:"msg"`
	Input any            `json:"input"`
	Ctx   map[string]any `json:"ctx,omitempty"`
}

// ValidationError is a 422: the request was understood but its fields are wrong.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return "validation failed"
	}
	return fmt.Sprintf("validation failed: %v %s", e.Fields[0].Loc, e.Fields[0].Msg)
}

// tooLargeError is a 413.
type tooLargeError struct{ what string }

func (e *tooLargeError) Error() string { return e.what }

// statusOf is the one place errors become HTTP statuses and client-facing bodies. Anything
// not classified is a 500 whose text stays in the log.
func statusOf(err error) (int, any) {
	var (
		he *Error
		ve *ValidationError
		te *tooLargeError
		ue *record.UnavailableError
		un *unhealthyError
	)
	switch {
	case errors.As(err, &un):
		return http.StatusServiceUnavailable, un.detail
	case errors.As(err, &he):
		return he.Status, he.Detail
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, ve.Fields
	case errors.As(err, &te):
		return http.StatusRequestEntityTooLarge, te.what
	case errors.As(err, &ue):
		return http.StatusServiceUnavailable, ue.Backend + " unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "Service unavailable"
	case errors.Is(err, context.Canceled):
		return 499, "Client closed request"
	default:
		return http.StatusInternalServerError, "Internal server error"
	}
}

// WriteError sends err as a JSON error response and records its full text for the
// request's access-log line.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := statusOf(err)
	if info := infoFrom(r.Context()); info != nil {
		info.err = err
	}
	WriteJSON(w, status, map[string]any{"detail": detail})
}
