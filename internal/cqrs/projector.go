package cqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
)

// Config tunes a Projector. PROJECTOR_BATCH_SIZE and PROJECTOR_POLL_INTERVAL are the
// original's settings; both defaults differ from its 10 events and 1 s, for the reasons and
// measurements in docs/l7-projection-lag.md.
type Config struct {
	BatchSize    int           `env:"PROJECTOR_BATCH_SIZE" default:"100"`        // most events applied in one read-database transaction
	PollInterval time.Duration `env:"PROJECTOR_POLL_INTERVAL" default:"100ms"`   // wait between polls of the outbox once caught up
	MaxAttempts  int           `env:"PROJECTOR_MAX_ATTEMPTS" default:"5"`        // failures of one event before it is parked
	RetryDelay   time.Duration `env:"PROJECTOR_RETRY_DELAY" default:"200ms"`     // wait after a failure, doubled per attempt
	MaxDelay     time.Duration `env:"PROJECTOR_MAX_RETRY_DELAY" default:"5s"`    // cap on that wait
	Heartbeat    time.Duration `env:"PROJECTOR_HEARTBEAT_INTERVAL" default:"1s"` // how often an idle projector shows it is alive
}

// Projector applies outbox events to the read model, exactly once each, in (xid, id)
// order. Several projectors may run at once: they take turns on the position row's lock
// and never apply one event twice. It runs until its context ends.
type Projector struct {
	outbox *Outbox
	read   pgstore.Conns
	cfg    Config
	logger *slog.Logger

	failures  map[int64]int // failed attempts of the event(s) at the head of the outbox
	lastBeat  time.Time
	transient int // consecutive failures that were the databases', not an event's
	// pos is where this projector last moved the position, if known: it saves reading it
	// before every batch. Another projector may have moved it since; the check under the
	// row lock catches that, and pos is forgotten.
	pos   Position
	knows bool
}

// NewProjector returns a projector from outbox into the read database read.
func NewProjector(outbox *Outbox, read pgstore.Conns, cfg Config, logger *slog.Logger) *Projector {
	cfg.BatchSize = max(cfg.BatchSize, 1)
	cfg.MaxAttempts = max(cfg.MaxAttempts, 1)
	return &Projector{outbox: outbox, read: read, cfg: cfg, logger: logger, failures: map[int64]int{}}
}

// errPositionMoved means another projector applied events since this one read the
// position: the batch in hand is stale and is dropped.
var errPositionMoved = errors.New("projection position moved: another projector is applying events")

// EventError is the failure of one event, as opposed to a database that cannot be reached.
type EventError struct {
	Event    Event
	Attempts int // failures so far, this one included
	Err      error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("project event %d (%s %q), attempt %d: %v", e.Event.ID, e.Event.Type, e.Event.Key, e.Attempts, e.Err)
}

func (e *EventError) Unwrap() error { return e.Err }

// Run projects until ctx ends, then returns nil. Database failures are retried for as long
// as they last; an event that fails MaxAttempts times is parked.
func (p *Projector) Run(ctx context.Context) error {
	p.logger.Info("projector started", "batch_size", p.cfg.BatchSize, "poll_interval", p.cfg.PollInterval)
	for {
		n, err := p.Step(ctx)
		if ctx.Err() != nil {
			p.logger.Info("projector stopped")
			return nil
		}
		wait := p.cfg.PollInterval
		var ee *EventError
		switch {
		case errors.Is(err, errPositionMoved):
			p.logger.Debug("batch dropped", "reason", err)
			wait = 0
		case errors.As(err, &ee):
			wait = p.backoff(ee.Attempts)
			p.logger.Warn("event failed, will retry", "event_id", ee.Event.ID, "attempt", ee.Attempts,
				"max_attempts", p.cfg.MaxAttempts, "retry_in", wait, "error", ee.Err)
		case err != nil:
			p.transient++
			wait = p.backoff(p.transient)
			p.logger.Warn("projection failed, will retry", "retry_in", wait, "error", err)
		case n >= p.cfg.BatchSize:
			wait = 0 // behind: fetch the next batch at once
		}
		if err == nil && p.transient > 0 {
			p.logger.Info("projection resumed", "after_failures", p.transient)
			p.transient = 0
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}

func (p *Projector) backoff(attempt int) time.Duration {
	d := p.cfg.RetryDelay
	for i := 1; i < attempt && d < p.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.cfg.MaxDelay)
}

// Step applies at most one batch and returns how many events it applied or parked. It
// returns an *EventError when an event failed and will be retried by the next Step.
func (p *Projector) Step(ctx context.Context) (n int, err error) {
	if !p.knows {
		if p.pos, err = p.position(ctx); err != nil {
			return 0, err
		}
		p.knows = true
	}
	defer func() {
		if err != nil {
			p.knows = false
		}
	}()
	events, err := p.outbox.Fetch(ctx, p.pos, p.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	if len(events) == 0 {
		return 0, p.heartbeat(ctx)
	}
	err = p.apply(ctx, p.pos, events)
	if err == nil {
		clear(p.failures)
		p.pos = Of(events[len(events)-1])
		return len(events), nil
	}
	if transient(err) {
		return 0, err
	}
	// One of the events is refused: apply them one by one to find it.
	return p.applyEach(ctx, events)
}

// applyEach applies events one per transaction; the first that fails is retried by a
// later Step, or parked if it has failed MaxAttempts times.
func (p *Projector) applyEach(ctx context.Context, events []Event) (int, error) {
	for i, e := range events {
		err := p.apply(ctx, p.pos, events[i:i+1])
		if err != nil && transient(err) {
			return i, err
		}
		if err != nil {
			p.failures[e.ID]++
			attempts := p.failures[e.ID]
			if attempts < p.cfg.MaxAttempts {
				return i, &EventError{Event: e, Attempts: attempts, Err: err}
			}
			if perr := p.park(ctx, p.pos, e, err, attempts); perr != nil {
				return i, perr
			}
			p.logger.Error("event parked", "event_id", e.ID, "key", e.Key, "attempts", attempts, "error", err)
		}
		delete(p.failures, e.ID)
		p.pos = Of(e)
	}
	return len(events), nil
}

// transient reports a failure of the databases (unreachable, timed out, shutting down) or
// a lost race with another projector, which retrying cures, as opposed to an event that
// the read model refuses.
func transient(err error) bool {
	var ee *EventError
	if errors.As(err, &ee) {
		return false
	}
	if errors.Is(err, ErrUnknownType) {
		return false
	}
	return errors.Is(err, errPositionMoved) || record.IsUnavailable(pgstore.Classify(err))
}

// applySQL upserts one event into table (records, or the rebuild's copy): both event
// types set the value, keep the first event's time as created_at and count the write.
func applySQL(table string) string {
	return `INSERT INTO ` + table + ` AS r (key, value, created_at, updated_at, write_count)
VALUES ($1, $2, $3, $3, 1)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
	updated_at = GREATEST(r.updated_at, EXCLUDED.updated_at),
	write_count = r.write_count + 1`
}

var applyLive = applySQL("records")

const (
	lockPositionSQL = `SELECT last_xid, last_event_id FROM projection_state WHERE name = $1 FOR UPDATE`
	advanceSQL      = `UPDATE projection_state SET last_xid = $2, last_event_id = $3,
	events_projected = events_projected + $4, events_parked = events_parked + $5,
	projected_at = clock_timestamp(), heartbeat_at = clock_timestamp()
WHERE name = $1`
	parkSQL = `INSERT INTO parked_events (event_id, event_xid, type, key, value, event_time, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (event_id) DO UPDATE SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, parked_at = CURRENT_TIMESTAMP`
)

// checkEvent refuses what the read model cannot apply whatever the database says.
func checkEvent(e Event) error {
	if e.Type != RecordCreated && e.Type != RecordUpdated {
		return fmt.Errorf("%w %q", ErrUnknownType, e.Type)
	}
	return nil
}

// apply applies events, which follow from directly, in one read-database transaction that
// also moves the position past them. The position row is locked first and must still be
// at from: if another projector moved it, nothing is applied (errPositionMoved).
func (p *Projector) apply(ctx context.Context, from Position, events []Event) error {
	return p.inPositionTx(ctx, from, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, e := range events {
			if err := checkEvent(e); err != nil {
				return err
			}
			b.Queue(applyLive, e.Key, e.Value, e.Time)
		}
		last := events[len(events)-1]
		b.Queue(advanceSQL, Projection, last.XID, last.ID, len(events), 0)
		return tx.SendBatch(ctx, b).Close()
	})
}

// park sets e aside with its error and moves the position past it, in one transaction.
func (p *Projector) park(ctx context.Context, from Position, e Event, cause error, attempts int) error {
	return p.inPositionTx(ctx, from, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(parkSQL, e.ID, e.XID, e.Type, e.Key, e.Value, e.Time, cause.Error(), attempts)
		b.Queue(advanceSQL, Projection, e.XID, e.ID, 0, 1)
		return tx.SendBatch(ctx, b).Close()
	})
}

// inPositionTx runs fn in a read-database transaction that holds the position row's lock
// and has checked that the position is still from.
func (p *Projector) inPositionTx(ctx context.Context, from Position, fn func(pgx.Tx) error) error {
	err := p.read.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			var at Position
			if err := tx.QueryRow(ctx, lockPositionSQL, Projection).Scan(&at.XID, &at.EventID); err != nil {
				return fmt.Errorf("lock position: %w", err)
			}
			if at != from {
				return errPositionMoved
			}
			return fn(tx)
		})
	})
	if err != nil && !errors.Is(err, errPositionMoved) && transient(err) {
		return pgstore.Classify(err)
	}
	return err
}

func (p *Projector) position(ctx context.Context) (Position, error) {
	var pos Position
	err := p.read.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT last_xid, last_event_id FROM projection_state WHERE name = $1`, Projection).
			Scan(&pos.XID, &pos.EventID)
	})
	if err != nil {
		return Position{}, pgstore.Classify(fmt.Errorf("read position: %w", err))
	}
	return pos, nil
}

// heartbeat records, at most every Heartbeat, that an idle projector is alive, so that
// /health can tell an idle projector from a dead one.
func (p *Projector) heartbeat(ctx context.Context) error {
	if time.Since(p.lastBeat) < p.cfg.Heartbeat {
		return nil
	}
	err := p.read.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `UPDATE projection_state SET heartbeat_at = clock_timestamp() WHERE name = $1`, Projection)
		return err
	})
	if err != nil {
		return pgstore.Classify(fmt.Errorf("heartbeat: %w", err))
	}
	p.lastBeat = time.Now()
	return nil
}
