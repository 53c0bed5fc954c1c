// Package writequeue is a durable write buffer in front of PostgreSQL: writes are appended
// to a Redis Stream and acknowledged as soon as Redis has them; workers read the stream in
// batches through a consumer group and apply each batch to PostgreSQL in one statement.
//
// What it promises, and how:
//
//   - No acknowledged write is lost. An entry leaves the stream only after the commit that
//     applied it (XACK, then trimmed with XTRIM MINID, in one script after COMMIT). Entries a worker read but did not
//     acknowledge (it crashed, was killed, lost the database) stay in the group's pending list
//     and another worker claims them once they are idle for ClaimMinIdle (XAUTOCLAIM).
//   - Redeliveries are harmless. Every row stores the stream id (ms, seq) of the write it
//     holds, and the upsert only replaces a row whose stored id is older: per key, an older
//     write never overwrites a newer one, whatever the order in which workers apply them.
//     Within a batch, writes to the same key collapse to the newest.
//   - A write PostgreSQL rejects (a poison entry) does not take its batch down: the batch is
//     split in halves until the rejected write is alone, the rest is applied, and the
//     rejected one is retried on later deliveries and moved to a dead-letter stream after
//     MaxAttempts rejections.
//   - Read-your-writes. Enqueue also records, atomically with the XADD, which entry holds the
//     newest buffered write of the key (buffered:{key}); a read consults it first. The
//     worker deletes it after the flush only if no newer write came meanwhile, in the same
//     script that drops the key's cached copy, so a reader sees the buffered value, then the
//     committed one, never an older one.
//   - Backpressure. Enqueue refuses (ErrBacklogFull) while MaxBacklog writes wait to be
//     applied, instead of letting Redis grow without bound. The backlog is a counter the
//     scripts keep exact (+ on enqueue, − on acknowledgement or dead-lettering): the stream
//     itself may hold acknowledged entries for a while, behind an older one still pending.
package writequeue

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/groupcommit"
)

// Group is the consumer group the workers share.
const Group = "workers"

// Names are the Redis keys of one queue. Only the stream name is configurable
// (WRITE_QUEUE_NAME); the others derive from it.
type Names struct {
	Stream     string // the entries not yet applied (and, briefly, some acknowledged ones)
	Backlog    string // counter: writes not yet applied nor dead-lettered
	DeadLetter string // entries PostgreSQL kept rejecting, with the reason
	Queued     string // counter: writes accepted since the queue was created
	Processed  string // counter: writes applied (or superseded by a newer applied write)
	Attempts   string // hash: entry id → times PostgreSQL rejected it
	Workers    string // sorted set: worker → last heartbeat (ms, Redis clock)
}

// NamesFor returns the keys of the queue whose stream is named stream.
func NamesFor(stream string) Names {
	return Names{
		Stream:     stream,
		Backlog:    stream + ":backlog",
		DeadLetter: stream + ":dead",
		Queued:     stream + ":queued",
		Processed:  stream + ":processed",
		Attempts:   stream + ":attempts",
		Workers:    stream + ":workers",
	}
}

// BufferedKey is the Redis key that points at the newest buffered write of key. It holds
// "<entry id> <created> <updated> <value>": created is the time (µs) of the first write
// buffered for the key since it was last flushed (what a new row's created_at will be),
// updated and value are the entry's. The copy of the value lets a read answer from one GET;
// the pointer lives exactly as long as its entry is unapplied (the ack and dead-letter
// scripts delete it with the entry), so the copy is never stale.
func BufferedKey(key string) string { return "buffered:" + key }

// ID is a stream entry id, "ms-seq". It is the version of the write the entry carries:
// Redis makes ids strictly increasing, and after a restart from an older AOF new ids still
// follow the clock, so they stay above every id a row may already hold.
type ID struct{ Ms, Seq int64 }

// ParseID parses "ms-seq".
func ParseID(s string) (ID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return ID{}, fmt.Errorf("stream id %q: no '-'", s)
	}
	var id ID
	var err1, err2 error
	id.Ms, err1 = strconv.ParseInt(ms, 10, 64)
	id.Seq, err2 = strconv.ParseInt(seq, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ID{}, fmt.Errorf("stream id %q: %w", s, err)
	}
	return id, nil
}

// Less orders ids as the stream does.
func (a ID) Less(b ID) bool { return a.Ms < b.Ms || a.Ms == b.Ms && a.Seq < b.Seq }

func (a ID) String() string { return fmt.Sprintf("%d-%d", a.Ms, a.Seq) }

// ErrBacklogFull is Enqueue's answer while MaxBacklog entries wait to be applied.
var ErrBacklogFull = errors.New("write queue backlog is full")

// ErrClosed is Enqueue's answer once the queue is closed.
var ErrClosed = errors.New("write queue closed")

// Queue is the producer's side of the buffer, and what readers and /stats ask it.
//
// Enqueue is a group commit (internal/groupcommit): concurrent calls are gathered into one
// script run (one Redis round trip for up to maxEnqueueBatch writes), and each call returns
// once Redis has its own write, or with the reason it does not. A lone call waits for
// nobody.
type Queue struct {
	rdb        redis.UniversalClient
	names      Names
	maxBacklog int64
	writes     *groupcommit.Batcher[enqueueRequest, Entry]
}

const (
	flushers        = 2   // enqueue scripts in flight at once: one runs while the next batch gathers
	maxEnqueueBatch = 256 // writes per script run
)

// EnqueueTimeout bounds how long an enqueue waits for a flusher and for the pool's
// connection: past it the write is refused, not queued. The script itself is bounded by the
// client's read and write timeouts, and refused at once while the client's guard is open
// (internal/redisclient).
const EnqueueTimeout = time.Second

// NewQueue returns the queue whose stream is named stream on rdb. maxBacklog bounds the
// entries not yet applied (0 = no bound). Close it to stop its flushers.
func NewQueue(rdb redis.UniversalClient, stream string, maxBacklog int64) *Queue {
	q := &Queue{rdb: rdb, names: NamesFor(stream), maxBacklog: maxBacklog}
	q.writes = groupcommit.New(flushers, maxEnqueueBatch, q.enqueue)
	return q
}

// Close stops accepting writes; Enqueue calls in progress get their answer first.
func (q *Queue) Close() { q.writes.Close() }

// Names returns the queue's Redis keys.
func (q *Queue) Names() Names { return q.names }

// MaxBacklog is the configured bound (0 = none).
func (q *Queue) MaxBacklog() int64 { return q.maxBacklog }

// EnsureGroup creates the stream and the workers' group if they do not exist. A new group
// starts at the beginning of the stream: everything still in it is unapplied.
func EnsureGroup(ctx context.Context, rdb redis.UniversalClient, names Names) error {
	err := rdb.XGroupCreateMkStream(ctx, names.Stream, Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group: %w", err)
	}
	return nil
}

// enqueueScript appends writes to the stream while the backlog has room, points each key's
// buffered key at its write, and counts them, atomically. The time (µs, Redis clock)
// becomes the records' updated_at. The pointers of the whole batch are read with one MGET
// and written with one MSET: a write costs one call (its XADD) in the script. It returns
// {time, ids}, id "" for a write refused because the backlog is full.
//
//	KEYS: stream, queued counter, backlog counter, buffered:{key} of each write
//	ARGV: max backlog (0 = none), then key, value of each write
var enqueueScript = redis.NewScript(enqueueLua)

//go:embed lua/enqueue.lua
var enqueueLua string

// Entry is an accepted write: its stream id and the time Redis accepted it.
type Entry struct {
	ID   string
	Time time.Time
}

type enqueueRequest struct{ key, value string }

// Enqueue appends the write and returns once Redis has it. It fails with ErrBacklogFull
// while the backlog is at its bound, or with Redis's error, or if no flusher took the write
// within EnqueueTimeout. Once a flusher has taken the write, Enqueue waits for its outcome
// even if ctx ends, so that its answer is exact.
func (q *Queue) Enqueue(ctx context.Context, key, value string) (Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, EnqueueTimeout)
	defer cancel()
	entry, err := q.writes.Do(ctx, enqueueRequest{key: key, value: value})
	switch {
	case errors.Is(err, groupcommit.ErrClosed):
		return Entry{}, ErrClosed
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return Entry{}, fmt.Errorf("enqueue %q: %w", key, err)
	}
	return entry, err
}

// enqueue runs the script for batch, one result per write; ctx ends at the earliest
// deadline of the batch's writes.
func (q *Queue) enqueue(ctx context.Context, batch []enqueueRequest) []groupcommit.Result[Entry] {
	keys := []string{q.names.Stream, q.names.Queued, q.names.Backlog}
	args := []any{q.maxBacklog}
	for _, req := range batch {
		keys = append(keys, BufferedKey(req.key))
		args = append(args, req.key, req.value)
	}
	results := make([]groupcommit.Result[Entry], len(batch))
	fail := func(err error) []groupcommit.Result[Entry] {
		for i, req := range batch {
			results[i].Err = fmt.Errorf("enqueue %q: %w", req.key, err)
		}
		return results
	}
	res, err := enqueueScript.Run(ctx, q.rdb, keys, args...).Slice()
	if err != nil {
		return fail(err)
	}
	if len(res) != 2 {
		return fail(fmt.Errorf("unexpected reply %v", res))
	}
	ts, err := parseMicros(res[0])
	ids, _ := res[1].([]any)
	if err == nil && len(ids) != len(batch) {
		err = fmt.Errorf("%d ids for %d writes", len(ids), len(batch))
	}
	if err != nil {
		return fail(err)
	}
	for i := range batch {
		switch id, _ := ids[i].(string); id {
		case "":
			results[i].Err = ErrBacklogFull
		default:
			results[i].Out = Entry{ID: id, Time: ts}
		}
	}
	return results
}

// Buffered is a write accepted but not yet applied to PostgreSQL.
type Buffered struct {
	ID      string
	Value   string
	Updated time.Time // when the write was accepted
	Created time.Time // when the first write buffered for the key was accepted
}

// Buffered returns the newest buffered write of key; ok is false when none is buffered.
func (q *Queue) Buffered(ctx context.Context, key string) (Buffered, bool, error) {
	p, err := q.rdb.Get(ctx, BufferedKey(key)).Result()
	if errors.Is(err, redis.Nil) {
		return Buffered{}, false, nil
	}
	if err == nil {
		var b Buffered
		if b, err = parsePointer(p); err == nil {
			return b, true, nil
		}
	}
	return Buffered{}, false, fmt.Errorf("read buffered %q: %w", key, err)
}

// parsePointer reads a buffered pointer, "<entry id> <created µs> <updated µs> <value>".
func parsePointer(p string) (b Buffered, err error) {
	f := strings.SplitN(p, " ", 4)
	if len(f) != 4 {
		return Buffered{}, fmt.Errorf("malformed pointer %.40q", p)
	}
	if _, err := ParseID(f[0]); err != nil {
		return Buffered{}, err
	}
	b.ID, b.Value = f[0], f[3]
	if b.Created, err = parseMicros(f[1]); err != nil {
		return Buffered{}, err
	}
	if b.Updated, err = parseMicros(f[2]); err != nil {
		return Buffered{}, err
	}
	return b, nil
}

// Stats describe the queue across every process that uses it.
type Stats struct {
	Length       int64   `json:"queue_length"`               // writes not yet applied nor dead-lettered (waiting or in flight)
	Queued       int64   `json:"writes_queued"`              // writes accepted, by every API process
	Processed    int64   `json:"writes_processed"`           // writes applied, by every worker
	Pending      int64   `json:"pending"`                    // entries delivered to a worker and not yet acknowledged
	DeadLettered int64   `json:"dead_lettered"`              // entries in the dead-letter stream
	OldestAge    float64 `json:"oldest_pending_age_seconds"` // age of the oldest entry not yet applied; 0 when none
	Workers      int64   `json:"workers"`                    // workers whose heartbeat is younger than WorkerSeen
}

// WorkerSeen is how recent a worker's heartbeat must be for it to count as running.
const WorkerSeen = 10 * time.Second

// Stats reads the queue's numbers in one round trip.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	n := q.names
	pipe := q.rdb.Pipeline()
	length := pipe.Get(ctx, n.Backlog)
	queued := pipe.Get(ctx, n.Queued)
	processed := pipe.Get(ctx, n.Processed)
	pending := pipe.XPending(ctx, n.Stream, Group)
	dead := pipe.XLen(ctx, n.DeadLetter)
	oldest := pipe.XRangeN(ctx, n.Stream, "-", "+", 1)
	now := pipe.Time(ctx)
	workers := pipe.ZRangeWithScores(ctx, n.Workers, 0, -1)
	_, _ = pipe.Exec(ctx)

	var st Stats
	var errs []error
	count := func(c *redis.IntCmd) int64 { errs = append(errs, c.Err()); return c.Val() }
	counter := func(c *redis.StringCmd) int64 {
		v, err := c.Int64()
		if !errors.Is(err, redis.Nil) {
			errs = append(errs, err)
		}
		return v
	}
	st.DeadLettered = count(dead)
	st.Length, st.Queued, st.Processed = max(counter(length), 0), counter(queued), counter(processed)
	if err := pending.Err(); err == nil {
		st.Pending = pending.Val().Count
	} else if !isNoGroup(err) {
		errs = append(errs, err)
	}
	errs = append(errs, oldest.Err(), now.Err(), workers.Err())
	if err := errors.Join(errs...); err != nil {
		return Stats{}, fmt.Errorf("queue stats: %w", err)
	}
	st.Workers = int64(len(live(workers.Val(), now.Val())))
	if len(oldest.Val()) == 1 {
		if id, err := ParseID(oldest.Val()[0].ID); err == nil {
			age := now.Val().Sub(time.UnixMilli(id.Ms)).Seconds()
			st.OldestAge = float64(int64(max(age, 0)*1000)) / 1000
		}
	}
	return st, nil
}

// LiveWorkers returns the workers whose heartbeat is younger than WorkerSeen.
func LiveWorkers(ctx context.Context, rdb redis.UniversalClient, names Names) ([]string, error) {
	pipe := rdb.Pipeline()
	beats := pipe.ZRangeWithScores(ctx, names.Workers, 0, -1)
	now := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read heartbeats: %w", err)
	}
	return live(beats.Val(), now.Val()), nil
}

// live returns the workers of heartbeats (name → unix ms) seen within WorkerSeen of now.
func live(heartbeats []redis.Z, now time.Time) []string {
	seen := float64(now.Add(-WorkerSeen).UnixMilli())
	var names []string
	for _, b := range heartbeats {
		if name, ok := b.Member.(string); ok && b.Score >= seen {
			names = append(names, name)
		}
	}
	return names
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// parseMicros reads a count of microseconds since the epoch (a Lua reply: string or int).
func parseMicros(v any) (time.Time, error) {
	var us int64
	var err error
	switch x := v.(type) {
	case string:
		us, err = strconv.ParseInt(x, 10, 64)
	case int64:
		us = x
	default:
		err = fmt.Errorf("not a time: %v", v)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time: %w", err)
	}
	return time.UnixMicro(us).UTC(), nil
}
