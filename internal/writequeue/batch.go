package writequeue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dblayers/dblayers/internal/pgstore"
)

// Schema adds to pgstore.Schema's records table the version the conditional upsert
// compares: the stream id (ms, seq) of the write a row holds. Rows written any other way
// have version (0, 0), older than every queued write.
const Schema = `ALTER TABLE records
	ADD COLUMN IF NOT EXISTS version_ms  BIGINT NOT NULL DEFAULT 0,
	ADD COLUMN IF NOT EXISTS version_seq BIGINT NOT NULL DEFAULT 0`

// upsertSQL applies a whole batch in one statement (one round trip): one row per key, and
// a stored row is replaced only by a newer version, so that redelivered or reordered
// batches never move a key back. created_at is the first write's time on insert and is
// kept afterwards; updated_at is the time the applied write was accepted.
const upsertSQL = `INSERT INTO records AS r (key, value, created_at, updated_at, version_ms, version_seq)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamp[], $4::timestamp[], $5::bigint[], $6::bigint[])
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at,
	version_ms = EXCLUDED.version_ms, version_seq = EXCLUDED.version_seq
WHERE (r.version_ms, r.version_seq) < (EXCLUDED.version_ms, EXCLUDED.version_seq)`

// entry is one stream entry: one accepted write.
type entry struct {
	id     string
	ver    ID
	key    string
	value  string
	ts     time.Time
	fields map[string]any // as read, for the dead-letter copy
}

// parseEntry reads the fields Enqueue writes: key, value, ts (µs since the epoch).
func parseEntry(id string, fields map[string]any) (entry, error) {
	e := entry{id: id, fields: fields}
	var err error
	if e.ver, err = ParseID(id); err != nil {
		return e, err
	}
	var ok1, ok2 bool
	e.key, ok1 = fields["key"].(string)
	e.value, ok2 = fields["value"].(string)
	if !ok1 || !ok2 {
		return e, fmt.Errorf("entry %s: missing key or value", id)
	}
	if e.ts, err = parseMicros(fields["ts"]); err != nil {
		return e, fmt.Errorf("entry %s: %w", id, err)
	}
	return e, nil
}

// write is what a batch applies for one key: the newest of its entries, with the time of
// the oldest as created_at for a new row. entries are all the key's entries in the batch,
// oldest first; applying the newest settles all of them.
type write struct {
	key     string
	entries []entry
}

func (w write) newest() entry { return w.entries[len(w.entries)-1] }

// size is roughly what the write adds to a statement, in bytes.
func (w write) size() int { return len(w.key) + len(w.newest().value) + 64 }

// collapse groups entries by key, newest last, and orders the keys, so that concurrent
// workers lock rows in the same order and cannot deadlock each other.
func collapse(es []entry) []write {
	byKey := make(map[string]int, len(es))
	var ws []write
	for _, e := range es {
		if i, ok := byKey[e.key]; ok {
			ws[i].entries = append(ws[i].entries, e)
			continue
		}
		byKey[e.key] = len(ws)
		ws = append(ws, write{key: e.key, entries: []entry{e}})
	}
	for i := range ws {
		slices.SortFunc(ws[i].entries, func(a, b entry) int {
			if a.ver.Less(b.ver) {
				return -1
			}
			if b.ver.Less(a.ver) {
				return 1
			}
			return 0
		})
	}
	slices.SortFunc(ws, func(a, b write) int { return cmp.Compare(a.key, b.key) })
	return ws
}

// apply upserts ws in one statement.
func apply(ctx context.Context, conns pgstore.Conns, ws []write) error {
	n := len(ws)
	keys, values := make([]string, n), make([]string, n)
	created, updated := make([]time.Time, n), make([]time.Time, n)
	ms, seq := make([]int64, n), make([]int64, n)
	for i, w := range ws {
		e := w.newest()
		keys[i], values[i] = w.key, e.value
		created[i], updated[i] = w.entries[0].ts, e.ts
		ms[i], seq[i] = e.ver.Ms, e.ver.Seq
	}
	err := conns.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, upsertSQL, keys, values, created, updated, ms, seq)
		return err
	})
	if err != nil {
		return fmt.Errorf("apply %d writes: %w", n, err)
	}
	return nil
}

// isPoison reports whether PostgreSQL rejected the data itself (a data exception, an
// integrity violation, a value over a limit): retrying the same write will fail the same
// way. Every other error (the database unreachable, a deadlock, a missing column) is worth
// retrying as is, and no entry is blamed for it.
func isPoison(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.SQLState()[:2] {
	case "22", "23", "54": // data exception, integrity constraint violation, program limit exceeded
		return true
	}
	return false
}
