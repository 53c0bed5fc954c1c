package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
)

// MaxKeyLength is the longest key, in characters: the records.key column is VARCHAR(255).
const MaxKeyLength = 255

// Body is a decoded JSON object request body. Its accessors check one field each and
// collect every problem, so that Err reports them all at once, as the original's 422s did.
type Body struct {
	fields map[string]json.RawMessage
	errs   []FieldError
	limits Limits
}

// DecodeBody reads r's body as a JSON object. A body over the size limit is a 413; a
// body that is not JSON, or not an object, is a 422.
func DecodeBody(r *http.Request) (*Body, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, bodyTooLarge(mbe.Limit)
		}
		return nil, fmt.Errorf("read body: %w", err)
	}
	b := &Body{limits: limitsFrom(r.Context())}
	// One parse in the common case: a JSON object. Anything else is parsed again below, only
	// to say precisely what is wrong with it.
	if err := json.Unmarshal(data, &b.fields); err == nil && b.fields != nil {
		return b, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		offset := int64(len(data))
		var se *json.SyntaxError
		if errors.As(err, &se) {
			offset = se.Offset
		}
		return nil, &ValidationError{Fields: []FieldError{{
			Type: "json_invalid", Loc: []any{"body", offset}, Msg: "JSON decode error",
			Input: map[string]any{}, Ctx: map[string]any{"error": jsonErrorText(err)},
		}}}
	}
	if dec.More() {
		return nil, &ValidationError{Fields: []FieldError{{
			Type: "json_invalid", Loc: []any{"body", dec.InputOffset()}, Msg: "JSON decode error",
			Input: map[string]any{}, Ctx: map[string]any{"error": "Extra data"},
		}}}
	}
	if _, ok := top.(map[string]any); !ok {
		return nil, &ValidationError{Fields: []FieldError{{
			Type: "model_attributes_type", Loc: []any{"body"},
			Msg: "Input should be a valid dictionary or object to extract fields from", Input: top,
		}}}
	}
	return nil, fmt.Errorf("decode body: unexpected JSON %.20q", data)
}

func jsonErrorText(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "Unexpected end of input"
	}
	return err.Error()
}

func (b *Body) fail(fe FieldError) { b.errs = append(b.errs, fe) }

// Has reports whether the field is present and not null.
func (b *Body) Has(name string) bool {
	raw, ok := b.fields[name]
	return ok && string(raw) != "null"
}

// raw returns the field, or records a "missing" error.
func (b *Body) raw(name string) (json.RawMessage, bool) {
	raw, ok := b.fields[name]
	if !ok {
		b.fail(FieldError{Type: "missing", Loc: []any{"body", name}, Msg: "Field required", Input: b.fields})
		return nil, false
	}
	return raw, true
}

// String returns a required string field. Numbers, booleans and null are type errors, as
// in pydantic v2 (no coercion to string).
func (b *Body) String(name string) string {
	raw, ok := b.raw(name)
	if !ok {
		return ""
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		b.fail(FieldError{Type: "string_type", Loc: []any{"body", name}, Msg: "Input should be a valid string", Input: raw})
		return ""
	}
	return s
}

// OptionalString returns a string field that may be absent or null.
func (b *Body) OptionalString(name string) (string, bool) {
	if !b.Has(name) {
		return "", false
	}
	return b.String(name), true
}

// Key returns a required string field that must be a valid record key (see checkKey).
func (b *Body) Key(name string) string {
	before := len(b.errs)
	s := b.String(name)
	if len(b.errs) == before {
		if fe, bad := checkKey(s, []any{"body", name}); bad {
			b.fail(fe)
		}
	}
	return s
}

// Value returns a required string field holding a stored value: at most the configured
// number of bytes (else the whole request is a 413) and no NUL characters, which
// PostgreSQL text cannot hold.
func (b *Body) Value(name string) string {
	before := len(b.errs)
	s := b.String(name)
	if len(b.errs) > before {
		return s
	}
	if strings.IndexByte(s, 0) >= 0 {
		b.fail(FieldError{Type: "string_pattern_mismatch", Loc: []any{"body", name},
			Msg: "String should not contain NUL characters", Input: s})
	}
	return s
}

// Float returns a required finite number. Numeric strings are accepted, as in pydantic's
// lax mode.
func (b *Body) Float(name string) float64 {
	raw, ok := b.raw(name)
	if !ok {
		return 0
	}
	text := string(raw)
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			text = strings.TrimSpace(s)
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		b.fail(FieldError{Type: "float_parsing", Loc: []any{"body", name}, Msg: "Input should be a valid number", Input: raw})
		return 0
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		b.fail(FieldError{Type: "finite_number", Loc: []any{"body", name}, Msg: "Input should be a finite number", Input: raw})
		return 0
	}
	return f
}

// Object returns a required JSON object field, undecoded.
func (b *Body) Object(name string) json.RawMessage {
	raw, ok := b.raw(name)
	if !ok {
		return nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		b.fail(FieldError{Type: "dict_type", Loc: []any{"body", name}, Msg: "Input should be a valid dictionary", Input: raw})
		return nil
	}
	return raw
}

// Err returns the collected problems as a *ValidationError (422), a *tooLargeError (413)
// when a value is over the limit, or nil.
func (b *Body) Err() error {
	if len(b.errs) > 0 {
		return &ValidationError{Fields: b.errs}
	}
	return nil
}

// checkValueSize reports a value over the configured limit as a 413.
func (b *Body) checkValueSize(value string) error {
	if max := b.limits.MaxValueBytes; max > 0 && int64(len(value)) > max {
		return &tooLargeError{fmt.Sprintf("Value exceeds the limit of %d bytes", max)}
	}
	return nil
}

// WriteRequest is the {"key","value"} body shared by every layer's POST /write.
type WriteRequest struct {
	Key   string
	Value string
}

// DecodeWrite reads and validates a {"key","value"} body.
func DecodeWrite(r *http.Request) (WriteRequest, *Body, error) {
	b, err := DecodeBody(r)
	if err != nil {
		return WriteRequest{}, nil, err
	}
	req := WriteRequest{Key: b.Key("key"), Value: b.Value("value")}
	if err := b.Err(); err != nil {
		return req, b, err
	}
	return req, b, b.checkValueSize(req.Value)
}

// PathKey returns the {key} URL parameter, percent-decoded and validated like a body key.
func PathKey(r *http.Request) (string, error) {
	key := chi.URLParam(r, "key")
	if r.URL.RawPath != "" {
		// chi matched on the escaped path, so the parameter is still escaped.
		k, err := url.PathUnescape(key)
		if err != nil {
			return "", Errorf(http.StatusBadRequest, "Invalid percent-encoding in key")
		}
		key = k
	}
	if fe, bad := checkKey(key, []any{"path", "key"}); bad {
		return key, &ValidationError{Fields: []FieldError{fe}}
	}
	return key, nil
}

// checkKey validates a record key: 1 to 255 characters of valid UTF-8, no '/', no control
// characters. It returns the 422 entry for loc and true when the key is invalid.
// CheckKey validates a record key: 1 to 255 characters of valid UTF-8, no '/', no control
// characters. It returns a 422 error or nil. The API description checks its key schema
// against it.
func CheckKey(key string) error {
	if fe, bad := checkKey(key, []any{"body", "key"}); bad {
		return &ValidationError{Fields: []FieldError{fe}}
	}
	return nil
}

func checkKey(key string, loc []any) (FieldError, bool) {
	n := utf8.RuneCountInString(key)
	switch {
	case n == 0:
		return FieldError{Type: "string_too_short", Loc: loc, Msg: "String should have at least 1 character",
			Input: key, Ctx: map[string]any{"min_length": 1}}, true
	case n > MaxKeyLength:
		return FieldError{Type: "string_too_long", Loc: loc, Msg: fmt.Sprintf("String should have at most %d characters", MaxKeyLength),
			Input: key, Ctx: map[string]any{"max_length": MaxKeyLength}}, true
	case !utf8.ValidString(key) || strings.ContainsFunc(key, func(r rune) bool { return r == '/' || unicode.IsControl(r) }):
		return FieldError{Type: "string_pattern_mismatch", Loc: loc,
			Msg: "String should not contain '/' or control characters", Input: key}, true
	}
	return FieldError{}, false
}
