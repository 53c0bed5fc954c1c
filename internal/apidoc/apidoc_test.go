package apidoc_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/layertest"
)

type answer struct {
	httpapi.ReadFields
	Tags  []string          `json:"tags"`
	Extra map[string]int    `json:"extra"`
	Note  *string           `json:"note,omitempty"`
	Raw   json.RawMessage   `json:"raw"`
	Any   any               `json:"any"`
	Named map[string]string `json:"-"`
}

func newRouter(logs *bytes.Buffer) *apidoc.Router {
	r := apidoc.NewRouter(httpapi.Options{Layer: "test", Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Limits: httpapi.Limits{MaxBodyBytes: 1000, MaxValueBytes: 100}}, apidoc.Info{Title: "test", Secured: true})
	r.Post("/write", httpapi.Handle(func(r *http.Request) (any, error) {
		req, _, err := httpapi.DecodeWrite(r)
		if err != nil {
			return nil, err
		}
		return httpapi.WriteResponse{Success: true, Key: req.Key, Message: "ok"}, nil
	}), apidoc.WriteOp("writes", apidoc.WriteOK("ok")))
	r.With().Get("/read/{key}", httpapi.Handle(func(r *http.Request) (any, error) {
		key, err := httpapi.PathKey(r)
		if err != nil {
			return nil, err
		}
		return answer{ReadFields: httpapi.NotFound(key, httpapi.MsgKeyNotFound), Raw: json.RawMessage(`[1]`)}, nil
	}), apidoc.Operation{Summary: "reads", OK: answer{ReadFields: apidoc.Found(), Tags: []string{"a"}}, Secured: true, RateLimited: true})
	r.Stats(httpapi.Handle(func(*http.Request) (any, error) { return map[string]int{"n": 1}, nil }),
		apidoc.StatsOp("stats", map[string]int{"n": 1}), "/stats")
	return r
}

func do(t *testing.T, h http.Handler, method, path, body string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// The document validates, lists exactly the mounted routes (the stats under both names),
// and every answer below validates against it (layertest.Validating checks all three).
func TestDocumentDescribesTheRoutes(t *testing.T) {
	r := newRouter(&bytes.Buffer{})
	h := layertest.Validating(t, r)
	assert.Equal(t, []string{"GET /cache-stats", "GET /read/{key}", "GET /stats", "POST /write"}, layertest.Mounted(t, r.Routes()))

	key := http.Header{"X-Api-Key": {"k"}}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"write", http.MethodPost, "/write", `{"key":"a","value":"b"}`, 200},
		{"missing field", http.MethodPost, "/write", `{"key":"a"}`, 422},
		{"not JSON", http.MethodPost, "/write", `{"key":`, 422},
		{"value too large", http.MethodPost, "/write", `{"key":"a","value":"` + strings.Repeat("v", 101) + `"}`, 413},
		{"body too large", http.MethodPost, "/write", `{"key":"a","value":"` + strings.Repeat("v", 1001) + `"}`, 413},
		{"read", http.MethodGet, "/read/a", "", 200},
		{"key too long", http.MethodGet, "/read/" + strings.Repeat("k", 256), "", 422},
		{"stats", http.MethodGet, "/stats", "", 200},
		{"unknown path", http.MethodGet, "/nope", "", 404},
		{"wrong method", http.MethodDelete, "/write", "", 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, do(t, h, tc.method, tc.path, tc.body, key).Code)
		})
	}

	var doc map[string]any
	require.NoError(t, json.Unmarshal(do(t, r, http.MethodGet, apidoc.DocumentPath, "", nil).Body.Bytes(), &doc))
	assert.Equal(t, apidoc.Version, doc["openapi"])
	read := doc["paths"].(map[string]any)["/read/{key}"].(map[string]any)["get"].(map[string]any)
	assert.Contains(t, read["responses"], "401")
	assert.Contains(t, read["responses"], "429")
	assert.NotEmpty(t, read["security"])
	write := doc["paths"].(map[string]any)["/write"].(map[string]any)["post"].(map[string]any)
	assert.Contains(t, write["requestBody"].(map[string]any)["description"], "1000 bytes")
	assert.Contains(t, write["responses"], "413")
	assert.NotContains(t, write["responses"], "401", "an open route")
}

// The document's key schema accepts exactly the keys httpapi.CheckKey accepts (JSON text,
// so valid UTF-8).
func TestKeySchemaAgreesWithCheckKey(t *testing.T) {
	s := apidoc.KeySchema()
	pattern := regexp.MustCompile(s["pattern"].(string))
	for _, key := range []string{"", "a", "user:1", "ünï cødé ✓", strings.Repeat("k", 255), strings.Repeat("é", 255),
		strings.Repeat("k", 256), "a/b", "tab\there", "nul\x00", "del\x7f", "c1\u0085", "zwsp\u200b"} {
		n := len([]rune(key))
		byDoc := pattern.MatchString(key) && n >= s["minLength"].(int) && n <= s["maxLength"].(int)
		assert.Equal(t, httpapi.CheckKey(key) == nil, byDoc, "%q", key)
	}
}

// The pages and assets are served from memory with ETags, revalidate to 304, and are not
// logged as load.
func TestPages(t *testing.T) {
	var logs bytes.Buffer
	r := newRouter(&logs)
	for path, want := range map[string]string{
		apidoc.DocumentPath:                 `"openapi"`,
		apidoc.SwaggerPath:                  "docs/assets/swagger-ui-bundle.js",
		apidoc.RedocPath:                    "docs/assets/redoc.standalone.js",
		"/docs/assets/swagger-ui-bundle.js": "SwaggerUIBundle",
		"/docs/assets/swagger-ui.css":       ".swagger-ui",
		"/docs/assets/redoc.standalone.js":  "Redoc",
	} {
		rec := do(t, r, http.MethodGet, path, "", nil)
		require.Equal(t, http.StatusOK, rec.Code, path)
		assert.Contains(t, rec.Body.String(), want, path)
		etag := rec.Header().Get("ETag")
		require.NotEmpty(t, etag, path)
		assert.NotEmpty(t, rec.Header().Get("Cache-Control"), path)
		again := do(t, r, http.MethodGet, path, "", http.Header{"If-None-Match": {etag}})
		assert.Equal(t, http.StatusNotModified, again.Code, path)
	}
	assert.Equal(t, http.StatusNotFound, do(t, r, http.MethodGet, "/docs/assets/VERSIONS", "", nil).Code, "only scripts and styles")
	assert.Empty(t, logs.String(), "the docs are not logged at info level")
	do(t, r, http.MethodGet, "/stats", "", nil)
	assert.Contains(t, logs.String(), `"route":"/stats"`, "the API still is")
}
