package apidoc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/dblayers/dblayers/internal/httpapi"
)

// Version is the OpenAPI version of the document.
const Version = "3.1.0"

// Security scheme names in components.securitySchemes.
const (
	APIKeyScheme = "APIKeyHeader"
	BearerScheme = "BearerToken"
)

// JSON is the document, built once on first use.
func (d *document) JSON() ([]byte, string) {
	d.once.Do(func() {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d.build()); err != nil {
			panic(fmt.Sprintf("apidoc: encode document: %v", err)) // a programming error: the document is plain data
		}
		sum := sha256.Sum256(buf.Bytes())
		d.json, d.etag = buf.Bytes(), `"`+hex.EncodeToString(sum[:16])+`"`
	})
	return d.json, d.etag
}

// ordered is a JSON object whose members keep the order they were added in: paths are
// listed in the order the layer mounts them, as the pages show them.
type ordered []member

type member struct {
	key   string
	value any
}

func (o ordered) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// Tags group the operations on the pages: those that write or read records (they take a
// body or a {key}) first, then the service's own.
const (
	tagRecords = "records"
	tagService = "service"
)

func (d *document) build() Schema {
	var paths ordered
	items := map[string]Schema{}
	for _, rt := range d.routes {
		item, ok := items[rt.pattern]
		if !ok {
			item = Schema{}
			items[rt.pattern] = item
			paths = append(paths, member{rt.pattern, item})
		}
		item[strings.ToLower(rt.method)] = d.operation(rt)
	}
	doc := Schema{
		"openapi": Version,
		"info": Schema{
			"title":       d.info.Title,
			"version":     "1.0.0",
			"description": d.info.Description + commonDescription,
			"license":     Schema{"name": "MIT", "identifier": "MIT"},
		},
		"tags": []Schema{
			{"name": tagRecords, "description": "Write and read records"},
			{"name": tagService, "description": "Health, statistics and the layer's own operations"},
		},
		"paths":      paths,
		"components": d.components(),
	}
	return doc
}

const commonDescription = `

Every answer is JSON (except /metrics) and carries an ` + "`X-Request-Id`" + ` header (the client's, or a new one)
that the layer's log line quotes. An unknown path answers 404 and a known path with the wrong method 405,
both as ` + "`{\"detail\": \"…\"}`" + `. Failing backends give a fast 503 whose detail never names a host or a driver.`

func (d *document) components() Schema {
	c := Schema{"schemas": Schema{
		"Error": Object(Schema{"detail": Schema{"type": "string"}}, "detail"),
		"ValidationError": Object(Schema{"detail": Schema{
			"type": "array", "items": Schema{"$ref": "#/components/schemas/FieldError"},
		}}, "detail"),
		"FieldError": schemaOf(reflect.TypeFor[httpapi.FieldError]()),
	}}
	if d.info.Secured {
		c["securitySchemes"] = Schema{
			APIKeyScheme: Schema{"type": "apiKey", "in": "header", "name": "X-API-Key",
				"description": "An API key from API_KEYS (in development mode also the development key)"},
			BearerScheme: Schema{"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
				"description": "A JWT signed with JWT_SECRET, when JWTs are enabled"},
		}
	}
	return c
}

func (d *document) operation(rt route) Schema {
	op := rt.op
	o := Schema{"operationId": operationID(rt.method, rt.pattern), "summary": op.Summary, "tags": []string{tagService}}
	if op.Description != "" {
		o["description"] = op.Description
	}
	var params []Schema
	keyed := false
	for _, name := range pathParams(rt.pattern) {
		keyed = true
		params = append(params, Schema{"name": name, "in": "path", "required": true, "schema": KeySchema(),
			"description": "The record's key, percent-encoded in the path"})
	}
	for _, p := range op.Params {
		params = append(params, Schema{"name": p.Name, "in": "header", "required": false,
			"schema": Schema{"type": "string"}, "description": p.Description, "example": p.Example})
	}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if op.Body != nil || keyed {
		o["tags"] = []string{tagRecords}
	}

	responses := Schema{"200": d.ok(op)}
	add := func(status int, detail string) {
		if _, dup := responses[strconv.Itoa(status)]; !dup {
			responses[strconv.Itoa(status)] = errorResponse(status, detail)
		}
	}
	for _, a := range op.Errors {
		if a.Body != nil {
			responses[strconv.Itoa(a.Status)] = Schema{"description": http.StatusText(a.Status),
				"content": Schema{"application/json": Schema{"schema": schemaOf(reflect.TypeOf(a.Body)), "example": a.Body}}}
		}
		add(a.Status, a.Detail)
	}
	if keyed {
		add(http.StatusBadRequest, "Invalid percent-encoding in key")
		responses["422"] = validationResponse(httpapi.CheckKey(""))
	}
	if op.Body != nil {
		o["requestBody"] = Schema{
			"required": true,
			"description": fmt.Sprintf("A JSON object of at most %s (MAX_BODY_BYTES); a stored value of at most %s (MAX_VALUE_BYTES). Larger ones get 413.",
				describeLimit(d.limits.MaxBodyBytes), describeLimit(d.limits.MaxValueBytes)),
			"content": Schema{"application/json": Schema{"schema": op.Body.Schema, "example": op.Body.Example}},
		}
		add(http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body exceeds the limit of %d bytes", d.limits.MaxBodyBytes))
		responses["422"] = validationResponse(invalidJSON())
	}
	if op.Secured && d.info.Secured {
		o["security"] = []Schema{{APIKeyScheme: []string{}}, {BearerScheme: []string{}}}
		r := errorResponse(http.StatusUnauthorized, "Missing API key")
		r["headers"] = Schema{"WWW-Authenticate": header("string", `Bearer error="invalid_token"`, "Sent when a bearer token is invalid or expired")}
		responses["401"] = r
	}
	if op.RateLimited {
		r := errorResponse(http.StatusTooManyRequests, "Rate limit exceeded. Try again in 42 seconds")
		r["headers"] = rateLimitHeaders(true)
		responses["429"] = r
	}
	if !op.Offline {
		add(http.StatusServiceUnavailable, "Service unavailable")
	}
	add(http.StatusInternalServerError, "Internal server error")
	o["responses"] = responses
	return o
}

func (d *document) ok(op Operation) Schema {
	r := Schema{"description": "OK"}
	if op.OKText != "" {
		r["content"] = Schema{"text/plain": Schema{"schema": Schema{"type": "string"}, "example": op.OKText}}
	} else {
		r["content"] = Schema{"application/json": Schema{"schema": schemaOf(reflect.TypeOf(op.OK)), "example": op.OK}}
	}
	if op.RateLimited {
		r["headers"] = rateLimitHeaders(false)
	}
	return r
}

func errorResponse(status int, detail string) Schema {
	return Schema{
		"description": http.StatusText(status),
		"content": Schema{"application/json": Schema{
			"schema":  Schema{"$ref": "#/components/schemas/Error"},
			"example": Schema{"detail": detail},
		}},
	}
}

// validationResponse is the 422, with err (a *httpapi.ValidationError) as its example.
func validationResponse(err error) Schema {
	var ve *httpapi.ValidationError
	if !errors.As(err, &ve) {
		panic(fmt.Sprintf("apidoc: want a validation error, got %v", err))
	}
	return Schema{
		"description": "Validation error: malformed JSON, a wrong type, a missing field or a bad key",
		"content": Schema{"application/json": Schema{
			"schema":  Schema{"$ref": "#/components/schemas/ValidationError"},
			"example": Schema{"detail": ve.Fields},
		}},
	}
}

// invalidJSON is what httpapi answers to a body that is not JSON.
func invalidJSON() error {
	req, err := http.NewRequest(http.MethodPost, "/", strings.NewReader(`{"key": "user:1",`))
	if err == nil {
		_, err = httpapi.DecodeBody(req)
	}
	return err
}

func header(typ string, example any, description string) Schema {
	return Schema{"schema": Schema{"type": typ}, "example": example, "description": description}
}

func rateLimitHeaders(limited bool) Schema {
	h := Schema{
		"X-RateLimit-Limit":     header("integer", 100, "Requests allowed per window"),
		"X-RateLimit-Remaining": header("integer", 99, "Requests left in the window"),
		"X-RateLimit-Reset":     header("integer", 36, "Seconds until the full limit is available again"),
	}
	if limited {
		h["X-RateLimit-Remaining"] = header("integer", 0, "Requests left in the window")
		h["Retry-After"] = header("integer", 42, "Seconds to wait before the next request is allowed")
	}
	return h
}
