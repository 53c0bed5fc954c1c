package writequeue

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/pgstore"
)

// WorkerConfig tunes the workers. WORKER_BATCH_SIZE and WORKER_POLL_INTERVAL are the
// original's names; their meaning is sharper here (see the field comments).
type WorkerConfig struct {
	// BatchSize is the most entries read, and applied in one statement, at a time. Under
	// light load batches are smaller: a read returns what is there. (The original: 10.)
	BatchSize int `env:"WORKER_BATCH_SIZE" default:"500"`
	// PollInterval is the longest one read waits for new entries (XREADGROUP BLOCK). It is
	// not a sleep: an entry is read as soon as it arrives. It bounds how long a stop waits.
	PollInterval time.Duration `env:"WORKER_POLL_INTERVAL" default:"1s"`
	// Linger is how long the worker waits, after a batch that was not full, before it reads
	// again: batches fill up under load, so each round trip, script and statement carries
	// more writes. It adds at most Linger to the time a write waits for PostgreSQL (readers
	// do not notice: they read the buffered write). 0 reads again at once.
	Linger time.Duration `env:"WORKER_BATCH_LINGER" default:"50ms"`
	// ClaimMinIdle is how long an entry may stay delivered but unacknowledged (its worker
	// died, or is stuck) before another worker claims it. Keep it well above the time one
	// batch takes: a shorter one makes workers apply the same entries twice (harmless, but
	// wasted).
	ClaimMinIdle time.Duration `env:"WORKER_CLAIM_MIN_IDLE" default:"30s"`
	// MaxAttempts is how many times PostgreSQL may reject an entry (one rejection per
	// delivery) before it is moved to the dead-letter stream.
	MaxAttempts int `env:"WORKER_MAX_ATTEMPTS" default:"5"`
	// Concurrency is the number of workers (consumers) in this process. Two keep PostgreSQL
	// busy while one of them waits for its commit to be flushed to disk.
	Concurrency int `env:"WORKER_CONCURRENCY" default:"2"`
	// Consumer names this process's consumers (name-0, name-1 …); default host-pid-random.
	// Names must be unique among live workers.
	Consumer string `env:"WORKER_CONSUMER"`
}

// maxStatementBytes bounds one upsert statement; a batch of large values is applied in
// several statements.
const maxStatementBytes = 8 << 20

// Worker moves entries from the stream into PostgreSQL as one consumer of the group.
type Worker struct {
	rdb       redis.UniversalClient
	conns     pgstore.Conns
	cacheKeys func(key string) []string
	names     Names
	cfg       WorkerConfig
	consumer  string
	logger    *slog.Logger

	claimAt time.Time // when to look for idle entries again
	cursor  string    // where the XAUTOCLAIM scan goes on
}

// NewWorker returns the worker named consumer of the queue whose stream is named stream.
// It applies writes through conns; cacheKeys (may be nil) names the Redis keys that cache
// a key's record, deleted once a write of that key is committed.
func NewWorker(rdb redis.UniversalClient, stream string, conns pgstore.Conns, cacheKeys func(string) []string,
	cfg WorkerConfig, consumer string, logger *slog.Logger) *Worker {
	cfg.BatchSize = max(cfg.BatchSize, 1)
	cfg.MaxAttempts = max(cfg.MaxAttempts, 1)
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.ClaimMinIdle <= 0 {
		cfg.ClaimMinIdle = 30 * time.Second
	}
	if cacheKeys == nil {
		cacheKeys = func(string) []string { return nil }
	}
	return &Worker{
		rdb: rdb, conns: conns, cacheKeys: cacheKeys, names: NamesFor(stream), cfg: cfg,
		consumer: consumer, logger: logger.With("consumer", consumer), cursor: "0-0",
	}
}

// RunWorkers runs cfg.Concurrency workers until ctx ends and each has finished the batch
// in its hands. The consumers are named cfg.Consumer-i.
func RunWorkers(ctx context.Context, rdb redis.UniversalClient, stream string, conns pgstore.Conns,
	cacheKeys func(string) []string, cfg WorkerConfig, logger *slog.Logger) {
	base := cfg.Consumer
	if base == "" {
		base = defaultConsumer()
	}
	var wg sync.WaitGroup
	for i := range max(cfg.Concurrency, 1) {
		w := NewWorker(rdb, stream, conns, cacheKeys, cfg, base+"-"+strconv.Itoa(i), logger)
		wg.Go(func() { w.Run(ctx) })
	}
	wg.Wait()
}

// defaultConsumer is host-pid-random: unique per process, readable in XINFO.
func defaultConsumer() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Run reads and applies batches until ctx ends. Three stages overlap, so that Redis and
// PostgreSQL work at the same time: a reader fetches the next batch while the current one
// is applied, and the acknowledgement of a committed batch (a Redis script) runs while the
// next one is applied. Each batch is acknowledged only after its own commit, and in order.
//
// Stopping never abandons a batch that can be applied: the batches in hand are applied and
// acknowledged first (a SIGTERM drains). Only while PostgreSQL or Redis is failing does a
// stop leave them pending, for another worker to claim.
func (w *Worker) Run(ctx context.Context) {
	work := context.WithoutCancel(ctx) // reads and flushes in progress finish; ctx only says stop
	w.logger.Info("worker started", "stream", w.names.Stream, "batch_size", w.cfg.BatchSize)
	beat, stopBeat := context.WithCancel(work)
	beating := make(chan struct{})
	go func() { w.heartbeat(beat); close(beating) }()

	batches := make(chan []redis.XMessage) // unbuffered: the reader is at most one batch ahead
	go w.read(ctx, work, batches)
	acks := make(chan []write, 1)
	acked := make(chan struct{})
	go func() { w.acknowledge(ctx, work, acks); close(acked) }()

	var retry backoff
	for msgs := range batches {
		for {
			applied, rest, err := w.process(work, msgs)
			if len(applied) > 0 {
				acks <- applied // committed: acknowledge even if the rest must be retried
			}
			if err == nil {
				retry.reset()
				break
			}
			msgs = rest // only what is not settled yet: a rejection counts once per delivery
			w.logger.Warn("cannot flush a batch; retrying", "entries", len(msgs), "error", err)
			if !retry.wait(ctx) {
				w.logger.Warn("stopping with a batch unapplied; it stays pending for another worker", "entries", len(msgs))
				break
			}
		}
	}
	close(acks)
	<-acked
	stopBeat()
	<-beating
	w.leave(work)
	w.logger.Info("worker stopped")
}

// read sends batches to out until ctx ends, then closes out. A batch it has read is always
// sent: Run takes every batch until out is closed.
func (w *Worker) read(ctx, work context.Context, out chan<- []redis.XMessage) {
	defer close(out)
	var retry backoff
	for ctx.Err() == nil {
		msgs, err := w.next(work)
		if err != nil {
			w.logger.Warn("cannot read the queue; retrying", "error", err)
			retry.wait(ctx)
			continue
		}
		retry.reset()
		if len(msgs) == 0 {
			continue
		}
		out <- msgs
		if len(msgs) < w.cfg.BatchSize && w.cfg.Linger > 0 {
			t := time.NewTimer(w.cfg.Linger)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// acknowledge acknowledges the committed writes it receives, in order, retrying while
// Redis fails; if it must stop first, the entries stay pending and are applied (again,
// harmlessly) and acknowledged by whoever claims them.
func (w *Worker) acknowledge(ctx, work context.Context, acks <-chan []write) {
	var retry backoff
	for ws := range acks {
		for {
			err := w.ack(work, ws)
			if err == nil {
				retry.reset()
				break
			}
			w.logger.Warn("cannot acknowledge applied writes; retrying", "writes", len(ws), "error", err)
			if !retry.wait(ctx) {
				break
			}
		}
	}
}

// next returns the next batch: entries idle at a dead or stuck worker first (checked every
// ClaimMinIdle/2), else new entries, waiting up to PollInterval for them.
func (w *Worker) next(ctx context.Context) ([]redis.XMessage, error) {
	if !time.Now().Before(w.claimAt) {
		msgs, cursor, err := w.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: w.names.Stream, Group: Group, Consumer: w.consumer,
			MinIdle: w.cfg.ClaimMinIdle, Start: w.cursor, Count: int64(w.cfg.BatchSize),
		}).Result()
		if err != nil {
			return nil, w.recoverGroup(ctx, err)
		}
		w.cursor = cursor
		if cursor == "0-0" {
			w.claimAt = time.Now().Add(max(w.cfg.ClaimMinIdle/2, 10*time.Millisecond))
			w.reap(ctx)
		}
		if len(msgs) > 0 {
			w.logger.Info("claimed idle entries", "entries", len(msgs))
			return msgs, nil
		}
	}
	streams, err := w.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: Group, Consumer: w.consumer, Streams: []string{w.names.Stream, ">"},
		Count: int64(w.cfg.BatchSize), Block: w.cfg.PollInterval,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, w.recoverGroup(ctx, err)
	}
	var msgs []redis.XMessage
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	return msgs, nil
}

// recoverGroup recreates the group when Redis lost it (a restart without persistence):
// the error is then nil and the caller just reads again.
func (w *Worker) recoverGroup(ctx context.Context, err error) error {
	if !isNoGroup(err) {
		return err
	}
	w.logger.Warn("consumer group missing; creating it")
	return EnsureGroup(ctx, w.rdb, w.names)
}

// process applies one batch and returns the writes it committed, to be acknowledged. Its
// error is one worth retrying the batch for (the database or Redis unreachable), and rest
// is then what to retry: the messages not yet committed, rejected or dead-lettered. A write
// PostgreSQL rejects is dealt with here and is not an error.
func (w *Worker) process(ctx context.Context, msgs []redis.XMessage) (applied []write, rest []redis.XMessage, err error) {
	var settled []string // ids dead-lettered or rejected: like the applied ones, not retried
	defer func() {
		if err != nil {
			rest = unsettled(msgs, applied, settled)
		}
	}()
	es := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := parseEntry(m.ID, m.Values)
		if err != nil {
			w.logger.Error("malformed entry; moving it to the dead-letter stream", "id", m.ID, "error", err)
			if err := w.deadLetter(ctx, e, "malformed entry: "+err.Error()); err != nil {
				return nil, nil, err
			}
			settled = append(settled, m.ID)
			continue
		}
		es = append(es, e)
	}
	ws := collapse(es)
	for len(ws) > 0 {
		n, size := 0, 0
		for n < len(ws) && (n == 0 || size+ws[n].size() <= maxStatementBytes) {
			size += ws[n].size()
			n++
		}
		done, rejected, err := w.flush(ctx, ws[:n])
		applied = append(applied, done...)
		for _, wr := range rejected {
			for _, e := range wr.entries {
				settled = append(settled, e.id)
			}
		}
		if err != nil {
			return applied, nil, err
		}
		ws = ws[n:]
	}
	return applied, nil, nil
}

// unsettled is msgs less the entries of applied and the ids settled: what a retry takes.
func unsettled(msgs []redis.XMessage, applied []write, settled []string) []redis.XMessage {
	done := make(map[string]bool, len(settled))
	for _, id := range settled {
		done[id] = true
	}
	for _, wr := range applied {
		for _, e := range wr.entries {
			done[e.id] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(msgs), func(m redis.XMessage) bool { return done[m.ID] })
}

// flush applies ws in one statement and returns what it committed and what PostgreSQL
// rejected (counted as an attempt, or dead-lettered). If PostgreSQL rejects the statement
// for its data, ws is split in halves, and so on, until the rejected write is alone: the
// others are applied, and only that one is set aside.
func (w *Worker) flush(ctx context.Context, ws []write) (applied, rejected []write, err error) {
	err = apply(ctx, w.conns, ws)
	switch {
	case err == nil:
		return ws, nil, nil
	case !isPoison(err):
		return nil, nil, err
	case len(ws) == 1:
		if err := w.reject(ctx, ws[0], err); err != nil {
			return nil, nil, err
		}
		return nil, ws, nil
	}
	mid := len(ws) / 2
	applied, rejected, err = w.flush(ctx, ws[:mid])
	if err != nil {
		return applied, rejected, err
	}
	right, rightRejected, err := w.flush(ctx, ws[mid:])
	return slices.Concat(applied, right), slices.Concat(rejected, rightRejected), err
}

// fieldsLua is a Lua function for the scripts that read XINFO replies: it turns a flat
// {name, value, …} array into a table by name, so that they read fields by name, not by
// position.
//
//go:embed lua/fields.lua
var fieldsLua string

// trimLua is a Lua function shared by the scripts that acknowledge entries: it removes
// from the head of the stream every entry that is acknowledged, that is every entry below
// the oldest still pending, or, when none is pending, up to the last one delivered to the
// group. One XTRIM per batch costs far less than an XDEL per entry. When the stream is
// then empty the backlog counter must be 0, and is set so (it heals any drift). It calls
// fields, so the scripts that use it start with fieldsLua too.
//
//go:embed lua/trim.lua
var trimLua string

// ackScript, run after the commit of ws: acknowledges their entries, counts those it
// acknowledged first (a redelivered entry is counted once) as processed and off the
// backlog, trims the stream, drops the keys' cached copies, and deletes each key's
// buffered pointer if it still points at the write just applied (a newer write keeps it).
// One script, so a reader sees either the buffered write or the committed row, never a
// stale cached copy in between. Its calls are per batch, not per write.
//
//	KEYS: stream, processed, attempts, backlog, buffered:{k} for each key, then the cache keys
//	ARGV: group, #ids, #keys, ids…, the applied id of each key…
var ackScript = redis.NewScript(fieldsLua + trimLua + ackLua)

//go:embed lua/ack.lua
var ackLua string

func (w *Worker) ack(ctx context.Context, ws []write) error {
	keys := make([]string, 4, 4+3*len(ws))
	keys[0], keys[1], keys[2], keys[3] = w.names.Stream, w.names.Processed, w.names.Attempts, w.names.Backlog
	var ids, applied []any
	var cacheKeys []string
	for _, wr := range ws {
		keys = append(keys, BufferedKey(wr.key))
		for _, e := range wr.entries {
			ids = append(ids, e.id)
		}
		applied = append(applied, wr.newest().id)
		cacheKeys = append(cacheKeys, w.cacheKeys(wr.key)...)
	}
	keys = append(keys, cacheKeys...)
	args := append([]any{Group, len(ids), len(ws)}, ids...)
	args = append(args, applied...)
	if err := ackScript.Run(ctx, w.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("acknowledge %d entries: %w", len(ids), err)
	}
	return nil
}

// reject counts a rejection of wr's newest entry. Below MaxAttempts its entries stay
// pending, to be retried when they are claimed again after ClaimMinIdle; at MaxAttempts
// they move to the dead-letter stream.
func (w *Worker) reject(ctx context.Context, wr write, cause error) error {
	newest := wr.newest()
	n, err := w.rdb.HIncrBy(ctx, w.names.Attempts, newest.id, 1).Result()
	if err != nil {
		return fmt.Errorf("count attempt of %s: %w", newest.id, err)
	}
	if n < int64(w.cfg.MaxAttempts) {
		w.logger.Warn("PostgreSQL rejected a write; it will be retried", "id", newest.id, "key", wr.key,
			"attempt", n, "max_attempts", w.cfg.MaxAttempts, "error", cause)
		return nil
	}
	w.logger.Error("PostgreSQL rejected a write too often; moving it to the dead-letter stream",
		"id", newest.id, "key", wr.key, "attempts", n, "error", cause)
	for _, e := range wr.entries {
		if err := w.deadLetter(ctx, e, cause.Error()); err != nil {
			return err
		}
	}
	return nil
}

// deadLetterScript moves one entry to the dead-letter stream with the reason and the
// number of attempts, unless another worker already did (XACK then answers 0), takes it
// off the backlog, and drops the key's buffered pointer if it points at this entry.
//
//	KEYS: stream, dead-letter stream, attempts, buffered:{key}, backlog
//	ARGV: group, id, reason, the entry's fields (name, value, …)
var deadLetterScript = redis.NewScript(fieldsLua + trimLua + deadLetterLua)

//go:embed lua/dead_letter.lua
var deadLetterLua string

func (w *Worker) deadLetter(ctx context.Context, e entry, reason string) error {
	keys := []string{w.names.Stream, w.names.DeadLetter, w.names.Attempts, BufferedKey(e.key), w.names.Backlog}
	args := []any{Group, e.id, reason}
	for name, v := range e.fields {
		if name == "id" || name == "reason" || name == "attempts" {
			name = "entry_" + name
		}
		args = append(args, name, v)
	}
	if err := deadLetterScript.Run(ctx, w.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("dead-letter %s: %w", e.id, err)
	}
	return nil
}

// consumersScript deletes consumers of the group that hold no entries and have not read
// for ARGV[2] ms (workers that were killed, once their entries were claimed), except
// ARGV[3]. Checked and deleted atomically: a consumer holding entries is never deleted
// (that would orphan them). A live worker deleted by mistake is recreated by its next read.
//
//	KEYS: stream   ARGV: group, idle ms, consumer to keep
var consumersScript = redis.NewScript(fieldsLua + consumersLua)

//go:embed lua/consumers.lua
var consumersLua string

// reap removes consumers left behind by dead workers.
func (w *Worker) reap(ctx context.Context) {
	idle := max(10*w.cfg.ClaimMinIdle, 10*w.cfg.PollInterval)
	_ = w.rdb.ZRemRangeByScore(ctx, w.names.Workers, "-inf", strconv.FormatInt(time.Now().Add(-idle-WorkerSeen).UnixMilli(), 10)).Err()
	n, err := consumersScript.Run(ctx, w.rdb, []string{w.names.Stream}, Group, idle.Milliseconds(), w.consumer).Int()
	if err != nil && !isNoGroup(err) {
		w.logger.Warn("cannot remove dead consumers", "error", err)
	} else if n > 0 {
		w.logger.Info("removed dead consumers", "count", n)
	}
}

// heartbeatScript records that worker ARGV[1] runs, at Redis's time.
//
//	KEYS: workers
var heartbeatScript = redis.NewScript(heartbeatLua)

//go:embed lua/heartbeat.lua
var heartbeatLua string

// heartbeat tells /stats this worker runs, every heartbeatEvery until ctx ends. It says
// the process lives, not that it makes progress: oldest_pending_age_seconds tells that.
func (w *Worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		if err := heartbeatScript.Run(ctx, w.rdb, []string{w.names.Workers}, w.consumer).Err(); err != nil && ctx.Err() == nil {
			w.logger.Debug("heartbeat failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

const heartbeatEvery = time.Second

// leaveScript deletes consumer ARGV[2] if it holds no entries.
var leaveScript = redis.NewScript(fieldsLua + leaveLua)

//go:embed lua/leave.lua
var leaveLua string

// leave removes this worker's consumer on a clean stop, if it holds nothing.
func (w *Worker) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := leaveScript.Run(ctx, w.rdb, []string{w.names.Stream}, Group, w.consumer).Err()
	if err != nil && !isNoGroup(err) && !strings.Contains(err.Error(), "no such key") {
		w.logger.Warn("cannot remove this consumer", "error", err)
	}
	if err := w.rdb.ZRem(ctx, w.names.Workers, w.consumer).Err(); err != nil {
		w.logger.Warn("cannot remove this worker's heartbeat", "error", err)
	}
}

// backoff spaces retries: 50 ms doubling up to 2 s.
type backoff struct{ d time.Duration }

func (b *backoff) reset() { b.d = 0 }

// wait sleeps the next delay; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.d = min(max(2*b.d, 50*time.Millisecond), 2*time.Second)
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
