package cqrs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dblayers/dblayers/internal/pgstore"
)

// Acquirer hands out a connection for as long as the caller needs it (a *pgstore.Pool
// does): a rebuild is one long transaction, not bounded by the per-query timeout.
type Acquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// RebuildResult says what a rebuild did.
type RebuildResult struct {
	Events   int64    `json:"events"`   // events replayed into the read model
	Parked   int64    `json:"parked"`   // events the read model refused (parked again)
	Changed  int64    `json:"changed"`  // records inserted or corrected by the rebuild
	Removed  int64    `json:"removed"`  // records that no event explains, deleted
	Position Position `json:"position"` // where the projection stands afterwards
}

// Rebuild recomputes the read model from the whole outbox, the write side's event log,
// with the same apply statement as the live projector, and makes it the read model.
//
// It runs in one read-database transaction that first takes the position row's lock, so
// live projectors wait (their attempts time out and are retried) and no event is applied
// twice. Events are replayed into a temporary copy of records, then only the rows that
// differ are written back: readers keep reading the old rows until the commit, and
// read_count, which is query-side state no event carries, is kept. Events the read model
// refuses are parked again; the position, projected and parked counts are set to what
// the replay reached.
//
// The transaction is as long as the outbox needs, but no step of it waits longer than
// stepTimeout: getting the connection, beginning and locking, each batch's replay (its
// fetch from the outbox is bounded by the write database's query timeout), the merge, the
// commit. A database that hangs fails the rebuild, rolled back, within stepTimeout.
func Rebuild(ctx context.Context, outbox *Outbox, read Acquirer, batchSize int, stepTimeout time.Duration, logger *slog.Logger) (RebuildResult, error) {
	batchSize = max(batchSize, 1)
	step := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		return f(ctx)
	}
	var res RebuildResult
	err := rebuild(ctx, outbox, read, batchSize, step, logger, &res)
	if err != nil {
		return RebuildResult{}, pgstore.Classify(fmt.Errorf("rebuild: %w", err))
	}
	logger.Info("rebuild done", "events", res.Events, "parked", res.Parked, "changed", res.Changed,
		"removed", res.Removed, "position", res.Position.String())
	return res, nil
}

func rebuild(ctx context.Context, outbox *Outbox, read Acquirer, batchSize int, step func(func(context.Context) error) error,
	logger *slog.Logger, res *RebuildResult) error {
	var conn *pgxpool.Conn
	var tx pgx.Tx
	err := step(func(ctx context.Context) (err error) {
		if conn, err = read.Acquire(ctx); err != nil {
			return fmt.Errorf("acquire connection: %w", err)
		}
		if tx, err = conn.Begin(ctx); err != nil {
			return err
		}
		var at Position
		if err := tx.QueryRow(ctx, lockPositionSQL, Projection).Scan(&at.XID, &at.EventID); err != nil {
			return fmt.Errorf("lock position: %w", err)
		}
		logger.Info("rebuild started", "live_position", at.String())
		for _, stmt := range []string{
			`CREATE TEMP TABLE rebuild_records (LIKE records INCLUDING ALL) ON COMMIT DROP`,
			`CREATE TEMP TABLE rebuild_parked (LIKE parked_events INCLUDING ALL) ON COMMIT DROP`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if conn != nil {
		defer conn.Release()
	}
	if tx != nil {
		defer func() {
			// After a commit this does nothing; after a failure it must not wait on a
			// database that hangs either.
			_ = step(func(ctx context.Context) error { return tx.Rollback(ctx) })
		}()
	}
	if err != nil {
		return err
	}
	apply := applySQL("rebuild_records")
	for {
		events, err := outbox.Fetch(ctx, res.Position, batchSize)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			break
		}
		if err := step(func(ctx context.Context) error { return replay(ctx, tx, apply, events, res) }); err != nil {
			return err
		}
		res.Position = Of(events[len(events)-1])
		if len(events) < batchSize {
			break
		}
	}
	if err := step(func(ctx context.Context) error { return merge(ctx, tx, res) }); err != nil {
		return err
	}
	return step(func(ctx context.Context) error { return tx.Commit(ctx) })
}

// replay applies events to the rebuild's table under a savepoint; if the read model
// refuses one, it replays them one by one, each under its own savepoint, and parks those
// refused.
func replay(ctx context.Context, tx pgx.Tx, apply string, events []Event, res *RebuildResult) error {
	batch := func(events []Event) error {
		return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			b := &pgx.Batch{}
			for _, e := range events {
				if err := checkEvent(e); err != nil {
					return err
				}
				b.Queue(apply, e.Key, e.Value, e.Time)
			}
			return sp.SendBatch(ctx, b).Close()
		})
	}
	err := batch(events)
	if err == nil {
		res.Events += int64(len(events))
		return nil
	}
	if transient(err) {
		return err
	}
	for i, e := range events {
		err := batch(events[i : i+1])
		if err == nil {
			res.Events++
			continue
		}
		if transient(err) {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rebuild_parked (event_id, event_xid, type, key, value, event_time, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, 1)`, e.ID, e.XID, e.Type, e.Key, e.Value, e.Time, err.Error()); err != nil {
			return fmt.Errorf("park event %d: %w", e.ID, err)
		}
		res.Parked++
	}
	return nil
}

// merge makes the rebuilt table the read model: it deletes records no event explains,
// writes back the rows that differ, replaces the parked events and sets the position.
func merge(ctx context.Context, tx pgx.Tx, res *RebuildResult) error {
	tag, err := tx.Exec(ctx, `DELETE FROM records r WHERE NOT EXISTS (SELECT 1 FROM rebuild_records b WHERE b.key = r.key)`)
	if err != nil {
		return err
	}
	res.Removed = tag.RowsAffected()
	tag, err = tx.Exec(ctx, `INSERT INTO records AS r (key, value, created_at, updated_at, write_count)
SELECT key, value, created_at, updated_at, write_count FROM rebuild_records
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, created_at = EXCLUDED.created_at,
	updated_at = EXCLUDED.updated_at, write_count = EXCLUDED.write_count
WHERE (r.value, r.created_at, r.updated_at, r.write_count)
	IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.created_at, EXCLUDED.updated_at, EXCLUDED.write_count)`)
	if err != nil {
		return err
	}
	res.Changed = tag.RowsAffected()
	for _, stmt := range []string{
		`DELETE FROM parked_events`,
		`INSERT INTO parked_events SELECT * FROM rebuild_parked`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, `UPDATE projection_state SET last_xid = $2, last_event_id = $3,
	events_projected = $4, events_parked = $5, projected_at = clock_timestamp()
WHERE name = $1`, Projection, res.Position.XID, res.Position.EventID, res.Events, res.Parked)
	return err
}
