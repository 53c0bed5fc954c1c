// Package httpapi is the HTTP layer every service shares: a chi router with request ids,
// one structured access-log line per request, panic recovery and a body-size limit; JSON
// responses; request-body validation with the original's 422 shape; and the one mapping
// from errors to status codes, so that no driver or host detail ever reaches a client.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// Limits bound what a client may send.
type Limits struct {
	MaxBodyBytes  int64 // request body size; larger bodies get 413
	MaxValueBytes int64 // size of a stored value; larger values get 413
}

// Options configure NewRouter.
type Options struct {
	Layer  string // the layer's name, e.g. "2-read-cache"; logged with every request
	Logger *slog.Logger
	Limits Limits
	// Observe, if set, is called for every answered request with its route pattern (e.g.
	// /read/{key}; "unmatched" for a 404), status and duration: the access log's numbers,
	// for metrics. A panic is seen as the 500 the recovery middleware answers.
	Observe func(method, route string, status int, elapsed time.Duration)
}

// NewRouter returns a chi router with the shared middleware and JSON 404/405 answers.
// Middleware order: request id → access log → recovery → body limit. The client's address
// is the connection's: no proxy header is trusted (chi's RealIP took X-Forwarded-For from
// anyone, so a client could pick the address L10's anonymous rate limit counts).
func NewRouter(opts Options) chi.Router {
	r := chi.NewRouter()
	r.Use(requestID, accessLog(opts.Layer, opts.Logger, opts.Observe), recoverer, limit(opts.Limits), middleware.StripSlashes)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, &Error{Status: http.StatusNotFound, Detail: "Not Found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, &Error{Status: http.StatusMethodNotAllowed, Detail: "Method Not Allowed"})
	})
	return r
}

// HandlerFunc handles a request whose success answer is 200 with a JSON body.
type HandlerFunc func(r *http.Request) (any, error)

// Handle adapts h: its result is written as 200 JSON, its error through the one mapping.
func Handle(h HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusOK, v)
	}
}

// WriteJSON writes v as compact JSON with the given status. Non-ASCII is sent as is.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"detail":"Internal server error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// requestID takes X-Request-Id from the client or makes one, puts it in the context and
// echoes it in the response, so a client can quote it and an operator can find the log line.
func requestID(next http.Handler) http.Handler {
	return middleware.RequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(middleware.RequestIDHeader, middleware.GetReqID(r.Context()))
		next.ServeHTTP(w, r)
	}))
}

type ctxKey int

const (
	infoKey ctxKey = iota
	limitsKey
	accessLogKey
)

// requestInfo carries what a handler learned (its error, whether it is load) to the
// access-log line.
type requestInfo struct {
	err   error
	quiet bool
}

// Quiet marks h's requests as not load (e.g. the API documentation pages): the access log
// writes them at debug level and Observe does not see them.
func Quiet(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := infoFrom(r.Context()); info != nil {
			info.quiet = true
		}
		h.ServeHTTP(w, r)
	})
}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey).(*requestInfo)
	return info
}

func accessLog(layer string, logger *slog.Logger, observe func(method, route string, status int, elapsed time.Duration)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			info := &requestInfo{}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), infoKey, info)))
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			elapsed := time.Since(start)
			level := slog.LevelInfo
			switch {
			case status >= 500:
				level = slog.LevelError
			case status >= 400:
				level = slog.LevelWarn
			}
			if info.quiet {
				level = slog.LevelDebug
			}
			observed := observe != nil && !info.quiet
			logged := logger.Enabled(r.Context(), level) && (level > slog.LevelInfo || accessLogFrom(r.Context()).keep(elapsed))
			if !observed && !logged {
				return
			}
			route := routePattern(r) // chi builds it anew on every call: once per request
			if observed {
				observe(r.Method, route, status, elapsed)
			}
			if !logged {
				return
			}
			attrs := []slog.Attr{
				slog.String("request_id", middleware.GetReqID(r.Context())),
				slog.String("layer", layer),
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", elapsed),
			}
			if info.err != nil {
				attrs = append(attrs, slog.String("error", info.err.Error()))
			}
			logger.LogAttrs(r.Context(), level, "request", attrs...)
		})
	}
}

// routePattern is the matched chi pattern (e.g. /read/{key}), never the raw path, so logs
// and metrics do not grow a label per key.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if rec := recover(); rec != nil {
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				if info := infoFrom(r.Context()); info != nil {
					info.err = &panicError{value: rec, stack: debug.Stack()}
				}
				WriteJSON(w, http.StatusInternalServerError, map[string]any{"detail": "Internal server error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string {
	return "panic: " + slog.AnyValue(p.value).String() + "\n" + string(p.stack)
}
