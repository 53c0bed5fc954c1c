package layertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dblayers/dblayers/internal/apidoc"
)

// Validating wraps a layer's handler (an *apidoc.Router) for tests, so that every request a
// test sends is checked against the layer's own /openapi.json:
//
//   - the document is valid OpenAPI 3.1 (libopenapi-validator checks it against the
//     specification's schema), and its paths and methods are exactly the routes chi mounts;
//   - every answer to a documented route is documented: its status, headers and body
//     validate against the document;
//   - a request the document rejects (a bad key, a wrong body) gets a 4xx, never a 2xx;
//   - a request for no documented route gets the router's 404 or 405 {"detail": …}.
func Validating(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	api, ok := h.(interface{ Routes() chi.Routes })
	require.True(t, ok, "the layer's handler is an *apidoc.Router")
	routes := api.Routes()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, apidoc.DocumentPath, nil))
	require.Equal(t, http.StatusOK, rec.Code, "GET %s", apidoc.DocumentPath)
	spec := rec.Body.Bytes()
	v := ValidDocument(t, spec)
	require.Equal(t, Mounted(t, routes), Documented(t, spec), "the document lists exactly the mounted routes")

	var mu sync.Mutex // the validator's caches are not meant for concurrent use
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if !assert.NoError(t, err, "read the request body") {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())

		if apidoc.Own(r.URL.Path) {
			return
		}
		what := fmt.Sprintf("%s %s → %d %.300s", r.Method, r.URL.RequestURI(), rec.Code, rec.Body.Bytes())
		if !routes.Match(chi.NewRouteContext(), r.Method, strings.TrimSuffix(r.URL.Path, "/")) {
			assert.Contains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, rec.Code, "no such route: %s", what)
			var e struct{ Detail string }
			assert.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), what)
			assert.NotEmpty(t, e.Detail, what)
			return
		}
		req := r.Clone(r.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		defer mu.Unlock()
		reqOK, reqErrs := v.ValidateHttpRequestSync(req)
		if !reqOK {
			assert.True(t, rec.Code >= 400 && rec.Code < 500,
				"the document rejects the request (%s), the layer must too: %s", describe(reqErrs), what)
		}
		var decoded any
		if json.Unmarshal(rec.Body.Bytes(), &decoded) != nil && json.Valid(rec.Body.Bytes()) {
			return // a number beyond float64 (a 422 echoing 1e999999999), which the validator cannot decode
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		respOK, respErrs := v.ValidateHttpResponse(req, rec.Result())
		assert.True(t, respOK, "the answer is documented: %s: %s", describe(respErrs), what)
	})
}

// Mounted is every "METHOD /pattern" chi serves, less the documentation's own pages.
func Mounted(t testing.TB, routes chi.Routes) []string {
	t.Helper()
	var out []string
	require.NoError(t, chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !apidoc.Own(route) {
			out = append(out, method+" "+route)
		}
		return nil
	}))
	slices.Sort(out)
	return out
}

// ValidDocument parses an OpenAPI document, requires it to be valid OpenAPI 3.1 (checked
// against the specification's schema) and returns its request/response validator.
func ValidDocument(t testing.TB, spec []byte) validator.Validator {
	t.Helper()
	doc, err := libopenapi.NewDocument(spec)
	require.NoError(t, err, "parse the document")
	v, errs := validator.NewValidator(doc)
	require.Empty(t, errs, "build a validator")
	valid, verrs := v.ValidateDocument()
	require.True(t, valid, "the document is valid OpenAPI: %s", describe(verrs))
	return v
}

// Documented is every "METHOD /path" of an OpenAPI document.
func Documented(t testing.TB, spec []byte) []string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(spec, &doc))
	var out []string
	for path, item := range doc.Paths {
		for method := range item {
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

func describe(errs []*verrors.ValidationError) string {
	var parts []string
	for _, e := range errs {
		s := e.Message + ": " + e.Reason
		for _, se := range e.SchemaValidationErrors {
			s += fmt.Sprintf(" [%s: %s]", se.FieldPath, se.Reason)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
