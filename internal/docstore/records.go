package docstore

import (
	"encoding/json"

	"github.com/dblayers/dblayers/internal/record"
)

// RecordOf reads a document as a key/value record. A record written as ValueData is
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
