package cqrs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/pgstore"
)

// Outbox is the write side: the commands log and its outbox of events, in one database.
type Outbox struct {
	db pgstore.Conns
}

// NewOutbox returns the outbox on the write database db (schema: WriteSchema).
func NewOutbox(db pgstore.Conns) *Outbox { return &Outbox{db: db} }

// recordSQL appends the command and its event in one statement, hence one transaction:
// both rows commit, or neither does. The event's xid column defaults to the transaction's
// id.
const recordSQL = `WITH c AS (
	INSERT INTO commands (key, value) VALUES ($2, $3) RETURNING id, created_at
)
INSERT INTO outbox (type, key, value, command_id, created_at)
SELECT $1, $2, $3, c.id, c.created_at FROM c
RETURNING id`

// ErrUnknownType reports an event type that neither side knows.
var ErrUnknownType = errors.New("unknown event type")

// Record writes a command and its event (RecordCreated or RecordUpdated) atomically and
// returns the event id.
func (o *Outbox) Record(ctx context.Context, eventType, key, value string) (int64, error) {
	if eventType != RecordCreated && eventType != RecordUpdated {
		return 0, fmt.Errorf("record %q: %w", eventType, ErrUnknownType)
	}
	var id int64
	err := o.db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, recordSQL, eventType, key, value).Scan(&id)
	})
	if err != nil {
		return 0, pgstore.Classify(fmt.Errorf("record command %q: %w", key, err))
	}
	return id, nil
}

// fetchSQL returns the events after a position, in (xid, id) order, of transactions older
// than the oldest transaction still running. pg_current_snapshot() is the statement's own
// snapshot, the one the scan sees, so every event of a transaction below its xmin is
// visible now (or was rolled back and never will be), and every transaction that commits
// later has an xid at or above that xmin: it sorts after everything returned here.
//
// Ordering by id alone would not do: a transaction that took id 10 can commit after one
// that took id 11, and a projector that had moved past 11 would skip 10 for ever.
const fetchSQL = `SELECT id, xid::text::bigint, type, key, value, command_id, created_at
FROM outbox
WHERE (xid, id) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, id
LIMIT $3`

// Fetch returns up to limit events after pos that are safe to apply: no event that sorts
// before the last one returned can still commit.
func (o *Outbox) Fetch(ctx context.Context, after Position, limit int) ([]Event, error) {
	var events []Event
	err := o.db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, fetchSQL, strconv.FormatInt(after.XID, 10), after.EventID, limit)
		if err != nil {
			return err
		}
		events, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
			var e Event
			err := row.Scan(&e.ID, &e.XID, &e.Type, &e.Key, &e.Value, &e.CommandID, &e.Time)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, pgstore.Classify(fmt.Errorf("fetch events after %s: %w", after, err))
	}
	return events, nil
}

// Backlog is what a projection at some position has still to apply.
type Backlog struct {
	Events    int64         // committed events after the position
	OldestAge time.Duration // age of the oldest of them (0 when none)
}

const backlogSQL = `SELECT count(*),
	COALESCE(EXTRACT(EPOCH FROM clock_timestamp()::timestamp - min(created_at)), 0)::float8
FROM outbox WHERE (xid, id) > ($1::text::xid8, $2)`

// Backlog counts the committed events after pos and measures the oldest one's age on the
// write database's clock.
func (o *Outbox) Backlog(ctx context.Context, after Position) (Backlog, error) {
	var (
		b   Backlog
		age float64
	)
	err := o.db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, backlogSQL, strconv.FormatInt(after.XID, 10), after.EventID).Scan(&b.Events, &age)
	})
	if err != nil {
		return Backlog{}, pgstore.Classify(fmt.Errorf("backlog after %s: %w", after, err))
	}
	b.OldestAge = time.Duration(max(age, 0) * float64(time.Second))
	return b, nil
}

// Totals are the write side's counts.
type Totals struct {
	Events   int64 // rows in outbox: events published, by every process, ever
	Commands int64 // rows in commands
}

// Totals counts events and commands.
func (o *Outbox) Totals(ctx context.Context) (Totals, error) {
	var t Totals
	err := o.db.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM commands)`).Scan(&t.Events, &t.Commands)
	})
	if err != nil {
		return Totals{}, pgstore.Classify(fmt.Errorf("count events: %w", err))
	}
	return t, nil
}
