package cqrs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// ReadModel is the query side: the records table the projector maintains, and the
// projection's state next to it.
type ReadModel struct {
	db pgstore.Conns
}

// NewReadModel returns the read model on the read database db (schema: ReadSchema).
func NewReadModel(db pgstore.Conns) *ReadModel { return &ReadModel{db: db} }

// Row is one record of the read model with its counters.
type Row struct {
	record.Record
	ReadCount  int64 // reads of this key, this one included
	WriteCount int64 // events applied to this key
}

// readSQL counts the read and returns the row in one statement, as the original's
// UPDATE-then-SELECT transaction did.
const readSQL = `UPDATE records SET read_count = read_count + 1 WHERE key = $1
RETURNING key, value, created_at, updated_at, read_count, write_count`

// Read returns the record of key and counts the read; a missing key is
// record.ErrNotFound.
func (m *ReadModel) Read(ctx context.Context, key string) (Row, error) {
	var r Row
	err := m.db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, readSQL, key).Scan(&r.Key, &r.Value, &r.CreatedAt, &r.UpdatedAt, &r.ReadCount, &r.WriteCount)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Row{}, record.ErrNotFound
	}
	if err != nil {
		return Row{}, pgstore.Classify(fmt.Errorf("read %q: %w", key, err))
	}
	return r, nil
}

// State is the projection's progress as the read database records it.
type State struct {
	Position        Position
	EventsProjected int64          // events applied, by every projector process, since the last rebuild
	EventsParked    int64          // events that failed MaxAttempts times and were set aside
	ParkedIDs       []int64        // the first 20 parked event ids
	Records         int64          // rows in records
	SinceProjected  *time.Duration // time since a batch was last applied; nil if never
	SinceHeartbeat  *time.Duration // time since a projector last showed it was alive; nil if never
}

const stateSQL = `SELECT last_xid, last_event_id, events_projected, events_parked,
	EXTRACT(EPOCH FROM clock_timestamp()::timestamp - projected_at)::float8,
	EXTRACT(EPOCH FROM clock_timestamp()::timestamp - heartbeat_at)::float8,
	(SELECT count(*) FROM records),
	ARRAY(SELECT event_id FROM parked_events ORDER BY event_id LIMIT 20)
FROM projection_state WHERE name = $1`

// State reads the projection's position and counters.
func (m *ReadModel) State(ctx context.Context) (State, error) {
	var (
		s                    State
		projected, heartbeat *float64
	)
	err := m.db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, stateSQL, Projection).Scan(&s.Position.XID, &s.Position.EventID,
			&s.EventsProjected, &s.EventsParked, &projected, &heartbeat, &s.Records, &s.ParkedIDs)
	})
	if err != nil {
		return State{}, pgstore.Classify(fmt.Errorf("projection state: %w", err))
	}
	s.SinceProjected, s.SinceHeartbeat = seconds(projected), seconds(heartbeat)
	return s, nil
}

func seconds(f *float64) *time.Duration {
	if f == nil {
		return nil
	}
	d := time.Duration(max(*f, 0) * float64(time.Second))
	return &d
}

// Ping checks that the read database answers.
func (m *ReadModel) Ping(ctx context.Context) error { return ping(ctx, m.db) }

// Ping checks that the write database answers.
func (o *Outbox) Ping(ctx context.Context) error { return ping(ctx, o.db) }

func ping(ctx context.Context, db pgstore.Conns) error {
	err := db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var one int
		return c.QueryRow(ctx, "SELECT 1").Scan(&one)
	})
	if err != nil {
		return pgstore.Classify(fmt.Errorf("ping: %w", err))
	}
	return nil
}
