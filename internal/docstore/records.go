package docstore

import (
	"context"
	"encoding/json"

	"github.com/dblayers/dblayers/internal/record"
)

// RecordOf reads a document as a key/value record. A record written through Records is
// the document {"value": value}, and reads back as that value; any other document (another
// shape, or a value that is not a string) reads as the JSON text of its data.
func RecordOf(doc Document) record.Record {
	rec := record.Record{Key: doc.Key, Value: string(doc.Data), CreatedAt: doc.CreatedAt, UpdatedAt: doc.UpdatedAt}
	var fields map[string]json.RawMessage
	if json.Unmarshal(doc.Data, &fields) == nil && len(fields) == 1 {
		var value string
		if raw, ok := fields["value"]; ok && json.Unmarshal(raw, &value) == nil && raw[0] == '"' {
			rec.Value = value
		}
	}
	return rec
}

// Records is a record.Store over a document store: the common POST /write and
// GET /read/{key} of L8, which keep plain records as documents.
type Records struct{ Docs *Store }

var _ record.Store = Records{}

// Get implements record.Store.
func (r Records) Get(ctx context.Context, key string) (record.Record, error) {
	doc, err := r.Docs.Get(ctx, key)
	if err != nil {
		return record.Record{}, err
	}
	return RecordOf(doc), nil
}

// Put implements record.Store.
func (r Records) Put(ctx context.Context, key, value string) error {
	return r.Docs.Put(ctx, key, ValueData(value))
}
