package writequeue

import (
	"context"
	"errors"

	"github.com/dblayers/dblayers/internal/record"
)

// Committed reads records already applied to the database; fromCache tells whether the
// answer came from a cache. cache.Aside over a pgstore.Store is one.
type Committed interface {
	Lookup(ctx context.Context, key string) (rec record.Record, fromCache bool, err error)
}

// Source tells where a read was answered from.
type Source int

const (
	FromDatabase Source = iota // the committed row, read from PostgreSQL
	FromCache                  // the committed row, from the read cache
	FromBuffer                 // a write still in the queue
)

// Store is the buffered store: Put queues the write, Get reads your writes, the newest
// buffered one while a write is queued and the committed record otherwise.
type Store struct {
	queue     *Queue
	committed Committed
}

var _ record.Store = (*Store)(nil)

// NewStore returns the buffered store over queue and committed.
func NewStore(queue *Queue, committed Committed) *Store {
	return &Store{queue: queue, committed: committed}
}

// Put queues the write; it is durable once Put returns nil. It fails with ErrBacklogFull
// while the backlog is at its bound, with ctx's error if the caller gave up, and otherwise
// as the queue unavailable (record.Unavailable), like Lookup.
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
	rec, _, err := s.Lookup(ctx, key)
	return rec, err
}

// Lookup reads key and tells where the answer came from. If the queue cannot be asked, it
// fails rather than answer from the database: a queued write may be newer than the row.
//
// A buffered record has the buffered value, updated_at the time the write was accepted (what
// the row will hold once applied), and created_at that of the committed row if there is
// one, else that of the first write buffered for the key; while the database is
// unreachable, the latter.
func (s *Store) Lookup(ctx context.Context, key string) (record.Record, Source, error) {
	b, ok, err := s.queue.Buffered(ctx, key)
	if err != nil {
		return record.Record{}, FromBuffer, record.Unavailable("Queue", err)
	}
	if !ok {
		rec, fromCache, err := s.committed.Lookup(ctx, key)
		if fromCache {
			return rec, FromCache, err
		}
		return rec, FromDatabase, err
	}
	rec := record.Record{Key: key, Value: b.Value, CreatedAt: b.Created, UpdatedAt: b.Updated}
	old, _, err := s.committed.Lookup(ctx, key)
	switch {
	case err == nil:
		rec.CreatedAt = old.CreatedAt
	case errors.Is(err, record.ErrNotFound), record.IsUnavailable(err):
	default:
		return record.Record{}, FromBuffer, err
	}
	return rec, FromBuffer, nil
}
