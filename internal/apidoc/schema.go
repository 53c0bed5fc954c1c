package apidoc

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"time"

	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/record"
)

// Schema is a JSON Schema (2020-12, as OpenAPI 3.1 uses it).
type Schema = map[string]any

// KeySchema is a record key as httpapi.CheckKey accepts it: 1 to MaxKeyLength characters,
// no '/', no control character (Unicode Cc: U+0000–U+001F, U+007F–U+009F). The pattern
// holds those characters themselves (JSON escapes them), so that it reads the same in Go's
// RE2 and in a browser's ECMAScript regular expressions.
func KeySchema() Schema {
	return Schema{
		"type": "string", "minLength": 1, "maxLength": httpapi.MaxKeyLength,
		"pattern":     "^[^/\x00-\x1f\x7f-\u009f]*$",
		"description": "1 to 255 characters; no '/', no control characters",
		"examples":    []any{"user:1"},
	}
}

// ValueSchema is a stored value: a string without NUL characters (PostgreSQL text cannot
// hold them), at most MAX_VALUE_BYTES bytes of UTF-8 (a size JSON Schema cannot state in
// bytes: see the request body's description and its 413).
func ValueSchema() Schema {
	return Schema{
		"type": "string", "pattern": "^[^\x00]*$",
		"description": "any text without NUL characters, at most MAX_VALUE_BYTES bytes (else 413)",
		"examples":    []any{"Alice"},
	}
}

// Object is a JSON object schema with the given properties, of which required are required.
func Object(props Schema, required ...string) Schema {
	s := Schema{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

// WriteBody is the {"key","value"} body of every layer's POST /write (httpapi.DecodeWrite).
func WriteBody() *Body {
	return &Body{
		Schema:  Object(Schema{"key": KeySchema(), "value": ValueSchema()}, "key", "value"),
		Example: map[string]string{"key": "user:1", "value": "Alice"},
	}
}

var (
	timeType          = reflect.TypeFor[time.Time]()
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// schemaOf is the JSON Schema of what encoding/json makes of a value of type t: structs
// become objects whose fields without omitempty are required (embedded structs add their
// fields), pointers, slices and maps may be null, and a type with its own MarshalJSON may
// be anything.
func schemaOf(t reflect.Type) Schema {
	if t == timeType {
		return Schema{"type": "string", "format": "date-time"}
	}
	if t.Kind() == reflect.Pointer {
		return nullable(schemaOf(t.Elem()))
	}
	if t.Implements(marshalerType) {
		return Schema{}
	}
	if t.Implements(textMarshalerType) {
		return Schema{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Struct:
		props, required := Schema{}, []string{}
		addFields(t, props, &required)
		return Object(props, required...)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return Schema{"type": "string"}
		}
		return nullable(Schema{"type": "array", "items": schemaOf(t.Elem())})
	case reflect.Map:
		return nullable(Schema{"type": "object", "additionalProperties": schemaOf(t.Elem())})
	case reflect.String:
		return Schema{"type": "string"}
	case reflect.Bool:
		return Schema{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Schema{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return Schema{"type": "number"}
	default: // interfaces: anything
		return Schema{}
	}
}

func addFields(t reflect.Type, props Schema, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			addFields(f.Type, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaOf(f.Type)
		if !strings.Contains(","+opts+",", ",omitempty,") && !strings.Contains(","+opts+",", ",omitzero,") {
			*required = append(*required, name)
		}
	}
}

// nullable lets s also be null (a schema without a type already allows it).
func nullable(s Schema) Schema {
	if typ, ok := s["type"].(string); ok {
		s["type"] = []string{typ, "null"}
	}
	return s
}

// Found is an example of the common fields of a read answer for a record that exists.
func Found() httpapi.ReadFields {
	at := time.Date(2026, 1, 2, 15, 4, 5, 123456000, time.UTC)
	return httpapi.Found(record.Record{Key: "user:1", Value: "Alice", CreatedAt: at, UpdatedAt: at})
}

// WriteOK is an example of the {"success","key","message"} answer of a write.
func WriteOK(message string) httpapi.WriteResponse {
	return httpapi.WriteResponse{Success: true, Key: "user:1", Message: message}
}
