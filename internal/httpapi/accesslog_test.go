package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// With sampling off, only the errors get a line; the default logs every request.
func TestAccessLogSampling(t *testing.T) {
	lines := func(c *AccessLogConfig) (ok, notFound int) {
		var logs bytes.Buffer
		r := NewRouter(Options{Layer: "test", Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		r.Get("/ok", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
		var h http.Handler = r
		if c != nil {
			h = withAccessLog(*c, r)
		}
		for range 20 {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/ok", nil))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/missing", nil))
		}
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			switch {
			case strings.Contains(line, `"status":200`):
				ok++
			case strings.Contains(line, `"status":404`):
				notFound++
			}
		}
		return ok, notFound
	}
	ok, notFound := lines(nil)
	assert.Equal(t, 20, ok, "by default every request is logged")
	assert.Equal(t, 20, notFound)

	ok, notFound = lines(&AccessLogConfig{Sample: 0, Slow: time.Hour})
	assert.Zero(t, ok, "no quick success is logged at sample 0")
	assert.Equal(t, 20, notFound, "every error is")
}

func TestAccessLogKeep(t *testing.T) {
	c := AccessLogConfig{Sample: 0, Slow: time.Second}
	assert.False(t, c.keep(time.Millisecond), "quick, not sampled")
	assert.True(t, c.keep(2*time.Second), "slow: always")
	assert.True(t, AccessLogConfig{Sample: 1}.keep(0), "sample 1: always")
	assert.False(t, AccessLogConfig{Sample: 0}.keep(time.Hour), "no slow rule")
}
