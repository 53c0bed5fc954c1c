package httpapi

import (
	"github.com/dblayers/dblayers/internal/record"
)

// ReadFields are the fields every layer's GET /read/{key} answer starts with, in the
// original's order. Layers embed it and add their provenance fields (from_cache, shard_id …).
type ReadFields struct {
	Success   bool    `json:"success"`
	Key       string  `json:"key"`
	Value     *string `json:"value"`
	CreatedAt *string `json:"created_at"`
	UpdatedAt *string `json:"updated_at"`
	Message   *string `json:"message"`
}

// MsgKeyNotFound is the original's message for a missing key (HTTP 200, success false).
const MsgKeyNotFound = "Key not found"

// Found is the answer for a record that exists.
func Found(rec record.Record) ReadFields {
	value, created, updated := rec.Value, record.Timestamp(rec.CreatedAt), record.Timestamp(rec.UpdatedAt)
	return ReadFields{Success: true, Key: rec.Key, Value: &value, CreatedAt: &created, UpdatedAt: &updated}
}

// NotFound is the answer for a missing key: HTTP 200 with success false, as in the original.
func NotFound(key, message string) ReadFields {
	return ReadFields{Key: key, Message: &message}
}

// WriteResponse is the answer of POST /write in the layers that store synchronously.
type WriteResponse struct {
	Success bool   `json:"success"`
	Key     string `json:"key"`
	Message string `json:"message"`
}
