package httpapi

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"
)

// AccessLogConfig decides which answered requests get an access-log line, so that a load
// run need not pay for a line per request and still sees every error. Every answer of
// status 400 or more is logged; the others only when at least Slow or with probability
// Sample. LOG_LEVEL=warn drops the successful ones altogether.
type AccessLogConfig struct {
	Sample float64       `env:"ACCESS_LOG_SAMPLE" default:"1"` // share of the quick successful answers logged, 0 to 1 (1: all)
	Slow   time.Duration `env:"ACCESS_LOG_SLOW" default:"1s"`  // a successful answer this slow is always logged
}

// keep reports whether a successful answer that took elapsed gets its line.
func (c AccessLogConfig) keep(elapsed time.Duration) bool {
	switch {
	case c.Sample >= 1 || (c.Slow > 0 && elapsed >= c.Slow):
		return true
	case c.Sample <= 0:
		return false
	}
	return rand.Float64() < c.Sample
}

// withAccessLog hands c to the access log of every request h serves.
func withAccessLog(c AccessLogConfig, h http.Handler) http.Handler {
	if c.Sample >= 1 {
		return h // the default: every line, as without a configuration
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accessLogKey, c)))
	})
}

// accessLogFrom is the request's access-log configuration: every line unless Serve was
// told otherwise.
func accessLogFrom(ctx context.Context) AccessLogConfig {
	if c, ok := ctx.Value(accessLogKey).(AccessLogConfig); ok {
		return c
	}
	return AccessLogConfig{Sample: 1}
}
