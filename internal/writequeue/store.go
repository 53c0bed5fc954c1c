package writequeue

import (
	"context"
	"errors"
	"fmt"

	"github.com/dblayers/dblayers/internal/record"
)

// Committed reads records already applied to the database, through a read cache on the
// queue's Redis: cache.Aside over a pgstore.Store is one. PeekKey and Cached let a read ask
// the cache in the same command as the buffer.
type Committed interface {
	Read(ctx context.Context, key string) (record.Read, error)
	// PeekKey is the Redis key of key's cached record, or "" when the cache must not be
	// read now; Cached decodes what was read there, false when it must be read with Read.
	PeekKey(key string) string
	Cached(data []byte) (record.Record, bool)
}

// Store is the buffered store: Put queues the write, Get reads your writes, the newest
// buffered one while a write is queued and the committed record otherwise.
type Store struct {
	queue     *Queue
	committed Committed
}

var _ record.Reader = (*Store)(nil)

// NewStore returns the buffered store over queue and committed, whose cache must be on the
// queue's Redis, one server (a read asks for both keys in one MGET on the queue's client).
func NewStore(queue *Queue, committed Committed) *Store {
	return &Store{queue: queue, committed: committed}
}

// Put queues the write; it is durable once Put returns nil. It fails with ErrBacklogFull
// while the backlog is at its bound, with ctx's error if the caller gave up, and otherwise
// as the queue unavailable (record.Unavailable), like Read.
func (s *Store) Put(ctx context.Context, key, value string) error {
	_, err := s.queue.Enqueue(ctx, key, value)
	switch {
	case err == nil, errors.Is(err, ErrBacklogFull):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return record.Unavailable("Queue", err)
}

// Get implements record.Store.
func (s *Store) Get(ctx context.Context, key string) (record.Record, error) {
	r, err := s.Read(ctx, key)
	return r.Record, err
}

// Read reads key and tells where the answer came from: FromBuffer (a queued write),
// FromCache or FromStore (the committed row). If the queue cannot be asked, it fails
// rather than answer from the database: a queued write may be newer than the row.
//
// The buffer and the read cache are asked in one Redis command (MGET), the buffer first: a
// write acknowledged before the read began is in the buffer until the worker's
// acknowledgement, which drops the cached copy in the same script, so a cached row read
// after an empty buffer answer is never older than such a write. Only a cache miss costs
// more round trips (Committed.Read: the cache's fill lease, the database).
//
// A buffered record has the buffered value, updated_at the time the write was accepted (what
// the row will hold once applied), and created_at that of the committed row if there is
// one, else that of the first write buffered for the key; while the database is
// unreachable, the latter.
func (s *Store) Read(ctx context.Context, key string) (record.Read, error) {
	keys := []string{BufferedKey(key)}
	if ck := s.committed.PeekKey(key); ck != "" {
		keys = append(keys, ck)
	}
	vals, err := s.queue.rdb.MGet(ctx, keys...).Result()
	if err == nil && len(vals) != len(keys) {
		err = fmt.Errorf("%d values for %d keys", len(vals), len(keys))
	}
	if err != nil {
		return record.Read{}, record.Unavailable("Queue", fmt.Errorf("read buffered %q: %w", key, err))
	}
	p, isBuffered := vals[0].(string)
	var b Buffered
	if isBuffered {
		if b, err = parsePointer(p); err != nil {
			return record.Read{}, record.Unavailable("Queue", fmt.Errorf("read buffered %q: %w", key, err))
		}
	}
	var old record.Record
	var found bool
	if len(vals) > 1 {
		if data, ok := vals[1].(string); ok {
			old, found = s.committed.Cached([]byte(data))
		}
	}
	if !isBuffered {
		if found {
			return record.Read{Record: old, Tier: record.FromCache}, nil
		}
		return s.committed.Read(ctx, key)
	}
	if !found {
		r, err := s.committed.Read(ctx, key)
		switch {
		case err == nil:
			old, found = r.Record, true
		case errors.Is(err, record.ErrNotFound), record.IsUnavailable(err):
		default:
			return record.Read{}, err
		}
	}
	rec := record.Record{Key: key, Value: b.Value, CreatedAt: b.Created, UpdatedAt: b.Updated}
	if found {
		rec.CreatedAt = old.CreatedAt
	}
	return record.Read{Record: rec, Tier: record.FromBuffer}, nil
}
