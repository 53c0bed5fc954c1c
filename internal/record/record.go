// Package record defines what every layer stores and the one small interface through which
// the layers are composed: a cache wraps a Store, a router spreads keys over Stores, a buffer
// sits in front of one. It also holds the error values that cross layer boundaries, so that
// the HTTP layer can map them to status codes in one place.
package record

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Record is one key/value row with its timestamps. Timestamps are PostgreSQL TIMESTAMP
// values (UTC, no zone), as in the original project.
type Record struct {
	Key       string    `json:"key"`
	Value     string    `json:"value"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Store reads and writes records (Reader adds where a read came from). Get returns ErrNotFound for a missing key. Put is an
// upsert: created_at is set on first insert and kept, updated_at changes on every write,
// and the last writer wins.
type Store interface {
	Get(ctx context.Context, key string) (Record, error)
	Put(ctx context.Context, key, value string) error
}

// Read is a record with its provenance: which tier answered the read and, for a read a
// replica answered, which replica. Every layer says where a read came from this way.
type Read struct {
	Record
	Tier    Tier
	Replica string // the read replica that answered; empty when the primary (or the only database) did
}

// Tier is where a read was answered from, from the farthest out to this process.
type Tier uint8

// The tiers. The zero value is the store itself, so a Store that says nothing about its
// reads (a plain database) reads as FromStore.
const (
	FromStore  Tier = iota // the database (PostgreSQL, a shard, a replica)
	FromBuffer             // a write accepted and not yet applied to the database (L6)
	FromCache              // the shared Redis cache (L2)
	FromMemory             // this process's in-memory cache (L1)
)

// Reader is a Store whose reads tell where they were answered from. The Read is filled
// in even when err is ErrNotFound, with the tier and replica that found nothing.
type Reader interface {
	Store
	Read(ctx context.Context, key string) (Read, error)
}

// ReadFrom reads key from s with its provenance: s's own if s is a Reader, else FromStore.
func ReadFrom(ctx context.Context, s Store, key string) (Read, error) {
	if r, ok := s.(Reader); ok {
		return r.Read(ctx, key)
	}
	rec, err := s.Get(ctx, key)
	return Read{Record: rec}, err
}

// ErrNotFound reports a key that has no record.
var ErrNotFound = errors.New("record not found")

// UnavailableError reports that a backend (a database, a cache, a queue) could not serve a
// request: it was unreachable, too slow or shutting down. Clients see only the backend's
// name; Err stays in the logs.
type UnavailableError struct {
	Backend string // e.g. "Database", "Queue"; shown to clients
	Err     error
}

// Unavailable wraps err as an UnavailableError of the named backend. A nil err stays nil.
func Unavailable(backend string, err error) error {
	if err == nil {
		return nil
	}
	return &UnavailableError{Backend: backend, Err: err}
}

func (e *UnavailableError) Error() string { return fmt.Sprintf("%s unavailable: %v", e.Backend, e.Err) }
func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err is, or wraps, an UnavailableError.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// Timestamp formats a time as the original service did: naive ISO-8601 with microseconds,
// the fraction left out when it is zero (Python's datetime.isoformat()).
func Timestamp(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04:05.000000")
}
