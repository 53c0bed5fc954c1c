package docstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MaxDepth is how deeply a document's data may nest objects and arrays. MongoDB refuses
// documents nested more than 100 levels; this leaves room for the envelope.
const MaxDepth = 64

// Data is a document's content: a JSON object, checked and converted for MongoDB.
type Data struct {
	doc bson.D
}

// InvalidDataError is JSON that MongoDB could not store faithfully. Path locates the
// offending field inside data (object field names and array indexes).
type InvalidDataError struct {
	Path   []any
	Reason string
}

func (e *InvalidDataError) Error() string { return fmt.Sprintf("data %v: %s", e.Path, e.Reason) }

// ValueData is the data of a plain key/value record: {"value": value}.
func ValueData(value string) Data { return Data{doc: bson.D{{Key: "value", Value: value}}} }

// ParseData converts a JSON object to a document's data, keeping field order and number
// kinds: integers become int32 or int64, other numbers doubles. It refuses, with an
// *InvalidDataError, what MongoDB cannot store as sent: a field name that starts with '$',
// contains '.' or NUL, or is empty; an integer beyond 64 bits; a number beyond a double's
// range; nesting deeper than MaxDepth. It also refuses what FerretDB, the local MongoDB,
// cannot store, as the code keeps to what both servers support: an array directly inside
// an array ([{"a":[1]}] is fine, [[1]] is not), and a string holding NUL (U+0000), which
// the PostgreSQL jsonb under FerretDB cannot hold (as the request strings of
// httpapi.Body, and PostgreSQL's text, cannot either). A field given twice keeps its last value (as
// encoding/json does) at its first position.
func ParseData(raw []byte) (Data, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, nil)
	if err != nil {
		return Data{}, err
	}
	doc, ok := v.(bson.D)
	if !ok {
		return Data{}, &InvalidDataError{Reason: "data must be a JSON object"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Data{}, &InvalidDataError{Reason: "data is not one JSON value"}
	}
	return Data{doc: doc}, nil
}

func decodeValue(dec *json.Decoder, path []any) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, &InvalidDataError{Path: path, Reason: "invalid JSON"}
	}
	switch v := tok.(type) {
	case json.Delim:
		if len(path) >= MaxDepth {
			return nil, &InvalidDataError{Path: path, Reason: fmt.Sprintf("nesting deeper than %d levels", MaxDepth)}
		}
		if v == '[' {
			arr := bson.A{}
			for dec.More() {
				itemPath := append(path[:len(path):len(path)], len(arr))
				item, err := decodeValue(dec, itemPath)
				if err != nil {
					return nil, err
				}
				if _, nested := item.(bson.A); nested {
					return nil, &InvalidDataError{Path: itemPath, Reason: "arrays directly inside arrays are not supported"}
				}
				arr = append(arr, item)
			}
			_, err := dec.Token()
			return arr, err
		}
		doc, seen := bson.D{}, map[string]int{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, &InvalidDataError{Path: path, Reason: "invalid JSON"}
			}
			name := tok.(string)
			fieldPath := append(path[:len(path):len(path)], name)
			if reason := badFieldName(name); reason != "" {
				return nil, &InvalidDataError{Path: fieldPath, Reason: reason}
			}
			item, err := decodeValue(dec, fieldPath)
			if err != nil {
				return nil, err
			}
			if i, dup := seen[name]; dup {
				doc[i].Value = item
				continue
			}
			seen[name] = len(doc)
			doc = append(doc, bson.E{Key: name, Value: item})
		}
		_, err := dec.Token()
		return doc, err
	case json.Number:
		return number(v, path)
	case string:
		if strings.ContainsRune(v, 0) {
			return nil, &InvalidDataError{Path: path, Reason: "strings must not contain NUL"}
		}
		return v, nil
	default: // bool, nil
		return v, nil
	}
}

func badFieldName(name string) string {
	switch {
	case name == "":
		return "field names must not be empty"
	case strings.HasPrefix(name, "$"):
		return "field names must not start with '$'"
	case strings.ContainsAny(name, ".\x00"):
		return "field names must not contain '.' or NUL"
	}
	return ""
}

func number(n json.Number, path []any) (any, error) {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, &InvalidDataError{Path: path, Reason: "integer beyond 64 bits"}
		}
		if int64(int32(i)) == i {
			return int32(i), nil
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, &InvalidDataError{Path: path, Reason: "number beyond the range of a double"}
	}
	return f, nil
}

// dataJSON is the JSON of a stored data value, in MongoDB's relaxed Extended JSON: what
// ParseData stored reads back as plain JSON (a double that is whole keeps its ".0"). A
// document without data reads as {}.
func dataJSON(v bson.RawValue) (json.RawMessage, error) {
	if v.Type == 0 {
		return json.RawMessage("{}"), nil
	}
	if doc, ok := v.DocumentOK(); ok {
		return bson.MarshalExtJSON(doc, false, false)
	}
	// Not an object (written by another client): the value itself.
	wrapped, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	if err != nil {
		return nil, err
	}
	var w struct{ V json.RawMessage }
	if err := json.Unmarshal(wrapped, &w); err != nil {
		return nil, err
	}
	return w.V, nil
}
