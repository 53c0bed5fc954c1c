package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/record"
)

// memStore is a hand-written fake for the handler logic; storage itself is tested against
// real PostgreSQL elsewhere.
type memStore struct {
	recs map[string]record.Record
	err  error
}

var _ record.Store = (*memStore)(nil)

func (m *memStore) Get(_ context.Context, key string) (record.Record, error) {
	if m.err != nil {
		return record.Record{}, m.err
	}
	rec, ok := m.recs[key]
	if !ok {
		return record.Record{}, record.ErrNotFound
	}
	return rec, nil
}

func (m *memStore) Put(_ context.Context, key, value string) error {
	if m.err != nil {
		return m.err
	}
	m.recs[key] = record.Record{Key: key, Value: value}
	return nil
}

func newServer(t *testing.T, store record.Store, logs *bytes.Buffer) *httptest.Server {
	t.Helper()
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	r := httpapi.NewRouter(httpapi.Options{Layer: "test", Logger: logger, Limits: httpapi.Limits{MaxBodyBytes: 1000, MaxValueBytes: 100}})
	r.Post("/write", httpapi.Handle(httpapi.WriteHandler(store, "ok")))
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadHandler(store)))
	r.Get("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestWriteValidation(t *testing.T) {
	store := &memStore{recs: map[string]record.Record{}}
	srv := newServer(t, store, &bytes.Buffer{})
	for _, tc := range []struct {
		name, body, wantType string
		wantStatus           int
		wantLoc              []any
	}{
		{"malformed", `{"key": "k", "value": `, "json_invalid", 422, []any{"body", 22.0}},
		{"array", `["k"]`, "model_attributes_type", 422, []any{"body"}},
		{"trailing data", `{"key":"k","value":"v"} {}`, "json_invalid", 422, nil},
		{"missing value", `{"key": "k"}`, "missing", 422, []any{"body", "value"}},
		{"number value", `{"key": "k", "value": 1}`, "string_type", 422, []any{"body", "value"}},
		{"null key", `{"key": null, "value": "v"}`, "string_type", 422, []any{"body", "key"}},
		{"empty key", `{"key": "", "value": "v"}`, "string_too_short", 422, []any{"body", "key"}},
		{"long key", `{"key": "` + strings.Repeat("k", 256) + `", "value": "v"}`, "string_too_long", 422, []any{"body", "key"}},
		{"slash", `{"key": "a/b", "value": "v"}`, "string_pattern_mismatch", 422, []any{"body", "key"}},
		{"tab", `{"key": "a\tb", "value": "v"}`, "string_pattern_mismatch", 422, []any{"body", "key"}},
		{"DEL char", `{"key": "a` + "\u007f" + `b", "value": "v"}`, "string_pattern_mismatch", 422, []any{"body", "key"}},
		{"NUL value", `{"key": "k", "value": "a\u0000"}`, "string_pattern_mismatch", 422, []any{"body", "value"}},
		{"value over limit", `{"key": "k", "value": "` + strings.Repeat("v", 101) + `"}`, "", 413, nil},
		{"body over limit", `{"key": "k", "value": "` + strings.Repeat("v", 1001) + `"}`, "", 413, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(t, http.MethodPost, srv.URL+"/write", tc.body)
			assert.Equal(t, tc.wantStatus, status, "%v", body)
			if tc.wantType != "" {
				items := body["detail"].([]any)
				item := items[0].(map[string]any)
				assert.Equal(t, tc.wantType, item["type"])
				if tc.wantLoc != nil {
					assert.Equal(t, tc.wantLoc, item["loc"])
				}
				assert.NotEmpty(t, item["msg"])
			} else {
				assert.IsType(t, "", body["detail"])
			}
			assert.Empty(t, store.recs, "nothing stored")
		})
	}
	t.Run("all problems reported at once", func(t *testing.T) {
		_, body := do(t, http.MethodPost, srv.URL+"/write", `{"key": 5}`)
		assert.Len(t, body["detail"], 2)
	})
	t.Run("extra fields are ignored; limits are inclusive", func(t *testing.T) {
		status, body := do(t, http.MethodPost, srv.URL+"/write", `{"key": "`+strings.Repeat("é", 255)+`", "value": "`+strings.Repeat("v", 100)+`", "x": 1}`)
		assert.Equal(t, 200, status, "%v", body)
		assert.Len(t, store.recs, 1)
	})
}

func TestReadPaths(t *testing.T) {
	store := &memStore{recs: map[string]record.Record{"a b": {Key: "a b", Value: "v"}, "%2F": {Key: "%2F", Value: "pct"}}}
	srv := newServer(t, store, &bytes.Buffer{})
	status, body := do(t, http.MethodGet, srv.URL+"/read/a%20b", "")
	assert.Equal(t, 200, status)
	assert.Equal(t, "v", body["value"])
	_, body = do(t, http.MethodGet, srv.URL+"/read/%252F", "")
	assert.Equal(t, "pct", body["value"], "a literal %2F key")
	status, _ = do(t, http.MethodGet, srv.URL+"/read/a%2Fb", "")
	assert.Equal(t, 422, status, "an encoded slash is not a valid key")
	status, body = do(t, http.MethodGet, srv.URL+"/read/nope", "")
	assert.Equal(t, 200, status)
	assert.Equal(t, map[string]any{"success": false, "key": "nope", "value": nil, "created_at": nil, "updated_at": nil, "message": "Key not found"}, body)
	status, _ = do(t, http.MethodGet, srv.URL+"/read/a%20b/", "")
	assert.Equal(t, 200, status, "a trailing slash is ignored")
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		detail string
	}{
		{record.Unavailable("Database", errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")), 503, "Database unavailable"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), 503, "Service unavailable"},
		{httpapi.Errorf(http.StatusTooManyRequests, "slow down"), 429, "slow down"},
		{httpapi.Unhealthy("Database unhealthy", errors.New("pgconn secret")), 503, "Database unhealthy"},
		{errors.New("pq: syntax error at or near"), 500, "Internal server error"},
	} {
		store := &memStore{recs: map[string]record.Record{}, err: tc.err}
		var logs bytes.Buffer
		srv := newServer(t, store, &logs)
		status, body := do(t, http.MethodGet, srv.URL+"/read/k", "")
		assert.Equal(t, tc.status, status, tc.err.Error())
		assert.Equal(t, map[string]any{"detail": tc.detail}, body, "the client sees no internal detail")
		assert.Contains(t, logs.String(), `"error":`, "the cause goes to the log")
	}
}

func TestRouterBasics(t *testing.T) {
	var logs bytes.Buffer
	srv := newServer(t, &memStore{recs: map[string]record.Record{}}, &logs)
	status, body := do(t, http.MethodGet, srv.URL+"/nope", "")
	assert.Equal(t, 404, status)
	assert.Equal(t, "Not Found", body["detail"])
	status, body = do(t, http.MethodGet, srv.URL+"/write", "")
	assert.Equal(t, 405, status)
	assert.Equal(t, "Method Not Allowed", body["detail"])
	status, body = do(t, http.MethodGet, srv.URL+"/panic", "")
	assert.Equal(t, 500, status)
	assert.Equal(t, "Internal server error", body["detail"])

	// One access-log line per request, with the route pattern rather than the raw path.
	logs.Reset()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/read/secret-key", nil)
	req.Header.Set("X-Request-Id", "req-123")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "req-123", resp.Header.Get("X-Request-Id"))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 1)
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line))
	assert.Equal(t, "/read/{key}", line["route"])
	assert.Equal(t, "req-123", line["request_id"])
	assert.Equal(t, 200.0, line["status"])
	assert.Equal(t, "test", line["layer"])
	assert.NotContains(t, lines[0], "secret-key")
}

func TestFloatField(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{`1.5`, 1.5, true}, {`"2.25"`, 2.25, true}, {`-3`, -3, true},
		{`"abc"`, 0, false}, {`true`, 0, false}, {`"NaN"`, 0, false}, {`"Infinity"`, 0, false}, {`1e400`, 0, false},
	} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"amount": `+tc.in+`}`))
		b, err := httpapi.DecodeBody(req)
		require.NoError(t, err)
		got := b.Float("amount")
		if tc.ok {
			assert.NoError(t, b.Err(), tc.in)
			assert.Equal(t, tc.want, got, tc.in)
		} else {
			assert.Error(t, b.Err(), tc.in)
		}
	}
}
