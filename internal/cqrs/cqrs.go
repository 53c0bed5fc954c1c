// Package cqrs is command/query responsibility segregation with a transactional outbox:
// the write side appends each command, and the event that describes it, to one PostgreSQL
// database in one transaction; a projector applies the events to a read model in another
// database; queries read only the read model.
//
// Three properties are the lesson, and each has a mechanism:
//
//   - No dual write. The command row and its outbox event commit together (Outbox.Record),
//     so an acknowledged command always has its event. The original committed the command
//     and then published to Redis, losing the event whenever Redis failed in between.
//   - Exactly once. The projector keeps its position in the read database and moves it in
//     the same transaction that applies the events, after locking the position row and
//     checking that nobody moved it (Projector). A crash rolls back both; a second projector
//     waits for the lock, sees the moved position and drops its stale batch.
//   - Nothing skipped. Outbox ids come from a sequence, and a transaction that took id 10
//     can commit after one that took id 11: a projector that had moved past 11 would never
//     see 10. So the projector reads events in (transaction id, event id) order and only
//     those of transactions older than the oldest one still running (the xmin of its
//     snapshot). Any transaction that commits later has a larger transaction id than
//     everything already read, so a position in that order never has to go back
//     (Outbox.Fetch).
//
// An event the read model rejects is retried, then parked in parked_events with its error
// and counted, never skipped silently. Rebuild replays the whole outbox with the same apply
// statement into a fresh table and swaps the result in, so a rebuilt read model equals the
// live one.
package cqrs

import (
	"fmt"
	"time"
)

// Event types, as in the original. Both upsert the record.
const (
	RecordCreated = "RecordCreated"
	RecordUpdated = "RecordUpdated"
)

// WriteSchema is the write database: the original's append-only commands table, and the
// outbox that holds one event per command. xid is the writing transaction's id; the
// index on (xid, id) serves the projector's ordered scan.
var WriteSchema = []string{
	`CREATE TABLE IF NOT EXISTS commands (
	id         SERIAL PRIMARY KEY,
	key        VARCHAR(255) NOT NULL,
	value      TEXT NOT NULL,
	created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)`,
	createIndex("idx_commands_key", "commands(key)"),
	`CREATE TABLE IF NOT EXISTS outbox (
	id         BIGSERIAL PRIMARY KEY,
	xid        XID8 NOT NULL DEFAULT pg_current_xact_id(),
	type       TEXT NOT NULL,
	key        VARCHAR(255) NOT NULL,
	value      TEXT NOT NULL,
	command_id INTEGER NOT NULL REFERENCES commands(id),
	created_at TIMESTAMP NOT NULL
)`,
	createIndex("idx_outbox_xid_id", "outbox(xid, id)"),
}

// ReadSchema is the read database: the original's denormalised records table, the
// projector's position (one row per projection), and the events it had to park.
var ReadSchema = []string{
	`CREATE TABLE IF NOT EXISTS records (
	key         VARCHAR(255) PRIMARY KEY,
	value       TEXT NOT NULL,
	created_at  TIMESTAMP NOT NULL,
	updated_at  TIMESTAMP NOT NULL,
	read_count  INTEGER NOT NULL DEFAULT 0,
	write_count INTEGER NOT NULL DEFAULT 0
)`,
	createIndex("idx_records_updated_at", "records(updated_at DESC)"),
	`CREATE TABLE IF NOT EXISTS projection_state (
	name             TEXT PRIMARY KEY,
	last_xid         BIGINT NOT NULL DEFAULT 0,
	last_event_id    BIGINT NOT NULL DEFAULT 0,
	events_projected BIGINT NOT NULL DEFAULT 0,
	events_parked    BIGINT NOT NULL DEFAULT 0,
	projected_at     TIMESTAMP,
	heartbeat_at     TIMESTAMP
)`,
	`CREATE TABLE IF NOT EXISTS parked_events (
	event_id   BIGINT PRIMARY KEY,
	event_xid  BIGINT NOT NULL,
	type       TEXT NOT NULL,
	key        VARCHAR(255) NOT NULL,
	value      TEXT NOT NULL,
	event_time TIMESTAMP NOT NULL,
	error      TEXT NOT NULL,
	attempts   INTEGER NOT NULL,
	parked_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
)`,
	`INSERT INTO projection_state (name) VALUES ('` + Projection + `') ON CONFLICT (name) DO NOTHING`,
}

// createIndex creates an index unless it exists. CREATE INDEX IF NOT EXISTS is not enough:
// it takes a SHARE lock on the table before it looks, and a process starting while
// commands are written (a restarted projector) then deadlocks with the writers, whose
// one statement locks outbox before commands.
func createIndex(name, on string) string {
	return `DO $$ BEGIN
	IF to_regclass('` + name + `') IS NULL THEN CREATE INDEX ` + name + ` ON ` + on + `; END IF;
END $$`
}

// Projection is the name of the one projection, the records read model, in
// projection_state.
const Projection = "records"

// Event is one outbox row.
type Event struct {
	ID        int64     // outbox id: the event id clients see
	XID       int64     // id of the transaction that wrote it
	Type      string    // RecordCreated or RecordUpdated
	Key       string    // record key
	Value     string    // record value
	CommandID int64     // the commands row it describes
	Time      time.Time // when the command was written (write database clock)
}

// Position is where a projection stands in (XID, EventID) order: every event at or before
// it has been applied or parked. The zero Position is before the first event.
type Position struct {
	XID     int64 `json:"xid"`
	EventID int64 `json:"event_id"`
}

// Of is the position of e.
func Of(e Event) Position { return Position{XID: e.XID, EventID: e.ID} }

func (p Position) String() string { return fmt.Sprintf("(xid %d, event %d)", p.XID, p.EventID) }
