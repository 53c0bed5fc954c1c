// Package apidoc makes every layer describe itself, as the original's FastAPI did: a layer
// mounts its routes through a Router, each with an Operation that says what it takes and
// answers, and the Router serves, next to them, GET /openapi.json (an OpenAPI 3.1 document
// of exactly those routes), GET /docs (Swagger UI, with "Try it out") and GET /redoc. The
// pages' scripts and styles are embedded in the binary: no CDN, so they work offline.
//
// The document cannot drift from the router: it is built from the same route list, the
// key rules and size limits come from httpapi (MaxKeyLength, the configured Limits), and the
// 422 entries are httpapi.FieldError, whose schema is read from the type itself.
package apidoc

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"

	"github.com/dblayers/dblayers/internal/httpapi"
)

// Info describes the layer as a whole.
type Info struct {
	Title       string // e.g. "L2 · read cache"
	Description string // CommonMark: what the layer adds to the one below
	// Secured says that routes with Operation.Secured need credentials (L10 with
	// AUTH_ENABLED): an X-API-Key header or, when JWTs are on, an Authorization: Bearer token.
	Secured bool
}

// Operation describes one route.
type Operation struct {
	Summary     string
	Description string
	Params      []Param // header parameters; a {key} in the path is described by itself
	Body        *Body   // the JSON request body, if the route takes one
	// OK is an example of the 200 answer; its Go type gives the schema (see schemaOf).
	OK any
	// OKText, if set, says the 200 answer is text/plain (e.g. Prometheus metrics), not JSON.
	OKText string
	// Offline says the handler touches no backend, so it never answers 503.
	Offline bool
	// Secured says the route needs an API key or bearer token (401) when Info.Secured.
	Secured bool
	// RateLimited says the route answers 429 past the caller's limit, with X-RateLimit-*
	// headers on its answers.
	RateLimited bool
	// Errors are the answers the route may give besides those its shape implies (400 and
	// 422 for a {key}, 413 and 422 for a body, 503 unless Offline, 500, 401 and 429).
	Errors []Answer
}

// Answer is a non-200 status an operation documents, with an example detail.
type Answer struct {
	Status int
	Detail string // an example of {"detail": …}
	// Body, if set, is an example of an answer that is not {"detail": …} (e.g. the health
	// document of a 503); its Go type gives the schema.
	Body any
}

// Param is a header parameter.
type Param struct {
	Name        string
	Description string
	Example     string
}

// Body is a JSON request body.
type Body struct {
	Schema  Schema
	Example any
}

// Router mounts routes on a chi router built by httpapi.NewRouter and records each with
// its Operation for the document.
type Router struct {
	mux chi.Router
	doc *document
}

type document struct {
	info   Info
	limits httpapi.Limits
	routes []route

	once sync.Once
	json []byte
	etag string
}

type route struct {
	method, pattern string
	op              Operation
}

// NewRouter returns a Router over httpapi.NewRouter(opts), with /openapi.json, /docs and
// /redoc already mounted. Those answer from memory and are marked httpapi.Quiet.
func NewRouter(opts httpapi.Options, info Info) *Router {
	r := &Router{mux: httpapi.NewRouter(opts), doc: &document{info: info, limits: opts.Limits}}
	mountPages(r.mux, r.doc)
	return r
}

// ServeHTTP serves the layer's API.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }

// Routes is the underlying chi router, for tests that walk what is mounted.
func (r *Router) Routes() chi.Routes { return r.mux }

// With returns a Router whose routes run the given middleware first (chi's With); they are
// documented in the same document.
func (r *Router) With(middleware ...func(http.Handler) http.Handler) *Router {
	return &Router{mux: r.mux.With(middleware...), doc: r.doc}
}

// Get mounts a GET route.
func (r *Router) Get(pattern string, h http.HandlerFunc, op Operation) {
	r.handle(http.MethodGet, pattern, h, op)
}

// Post mounts a POST route.
func (r *Router) Post(pattern string, h http.HandlerFunc, op Operation) {
	r.handle(http.MethodPost, pattern, h, op)
}

// Put mounts a PUT route.
func (r *Router) Put(pattern string, h http.HandlerFunc, op Operation) {
	r.handle(http.MethodPut, pattern, h, op)
}

// Stats mounts the statistics handler at /cache-stats and at the original's alias paths
// (e.g. /pool-stats on L1, /stats on L3 to L10): one document, several names.
func (r *Router) Stats(h http.HandlerFunc, op Operation, aliases ...string) {
	for _, path := range append([]string{"/cache-stats"}, aliases...) {
		r.Get(path, h, op)
	}
}

func (r *Router) handle(method, pattern string, h http.HandlerFunc, op Operation) {
	r.mux.Method(method, pattern, h)
	r.doc.routes = append(r.doc.routes, route{method: method, pattern: pattern, op: op})
}

// operationID is e.g. post_write, get_read_key: stable, unique per method and path.
func operationID(method, pattern string) string {
	id := strings.ToLower(method) + "_" + strings.Trim(nonWord.ReplaceAllString(pattern, "_"), "_")
	return strings.Trim(id, "_")
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9]+`)

// pathParams are the {names} of a chi pattern.
func pathParams(pattern string) []string {
	var names []string
	for _, m := range pathParam.FindAllStringSubmatch(pattern, -1) {
		names = append(names, m[1])
	}
	return names
}

var pathParam = regexp.MustCompile(`\{([^}:]+)\}`)

func describeLimit(n int64) string {
	if n <= 0 {
		return "no limit"
	}
	return fmt.Sprintf("%d bytes", n)
}

// WriteOp is a POST /write (or PUT) operation taking the shared {"key","value"} body.
func WriteOp(description string, ok any) Operation {
	return Operation{Summary: "Write a record", Description: description, Body: WriteBody(), OK: ok}
}

// ReadOp is a GET /read/{key} operation; ok is an example answer for a record that exists.
func ReadOp(description string, ok any) Operation {
	return Operation{Summary: "Read a record", OK: ok, Description: description +
		"\n\nA missing key is not an error: it answers 200 with `\"success\": false` and `\"message\": \"Key not found\"`."}
}

// HealthOp is GET /health: ok when the layer serves, 503 with unhealthy when it cannot.
func HealthOp(description string, ok any, unhealthy string) Operation {
	return Operation{Summary: "Health check", Description: description, OK: ok,
		Errors: []Answer{{Status: http.StatusServiceUnavailable, Detail: unhealthy}}}
}

// StatsOp is the statistics document (Router.Stats mounts it under all its names).
func StatsOp(description string, ok any) Operation {
	return Operation{Summary: "Statistics", Description: description, OK: ok}
}

// Own reports whether a mounted pattern is one of the documentation's own endpoints, which
// the document does not list (as FastAPI's does not).
func Own(pattern string) bool {
	return pattern == DocumentPath || pattern == SwaggerPath || pattern == RedocPath || strings.HasPrefix(pattern, assetsPath)
}
