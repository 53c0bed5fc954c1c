package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
)

// Schema is one region's tables. records is the original's (key, value, region = the
// region whose database holds the row, timestamps) plus the row's Version (hlc, origin).
// origin compares bytewise (COLLATE "C") so that SQL and Version.Newer agree on ties.
// replication_outbox holds, per destination region, the local writes it has not applied
// yet; a row is deleted once its destination has applied it.
var Schema = []string{
	`CREATE TABLE IF NOT EXISTS records (
	key        VARCHAR(255) PRIMARY KEY,
	value      TEXT         NOT NULL,
	region     VARCHAR(50)  NOT NULL,
	created_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
	updated_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
	hlc        BIGINT       NOT NULL,
	origin     VARCHAR(50)  COLLATE "C" NOT NULL
)`,
	`CREATE INDEX IF NOT EXISTS idx_records_updated_at ON records (updated_at DESC)`,
	`CREATE TABLE IF NOT EXISTS replication_outbox (
	id          BIGSERIAL    PRIMARY KEY,
	destination VARCHAR(50)  NOT NULL,
	key         VARCHAR(255) NOT NULL,
	value       TEXT         NOT NULL,
	hlc         BIGINT       NOT NULL,
	origin      VARCHAR(50)  NOT NULL,
	created_at  TIMESTAMP    NOT NULL,
	written_at  TIMESTAMP    NOT NULL,
	queued_at   TIMESTAMPTZ  NOT NULL DEFAULT clock_timestamp()
)`,
	`CREATE INDEX IF NOT EXISTS idx_replication_outbox_destination ON replication_outbox (destination, id)`,
}

const (
	// writeSQL is a local write: the row and one outbox entry per destination, in one
	// statement and so in one transaction. $4 is the region clock's stamp; if the stored
	// version is not older (a replicated write from a region whose clock is ahead, or a
	// concurrent local write that locked the row first), the write takes the stored HLC + 1
	// instead: under the row lock, so a local write always beats every version the region
	// has seen of the key, in one try.
	writeSQL = `WITH w AS (
	INSERT INTO records AS r (key, value, region, hlc, origin) VALUES ($1, $2, $3, $4, $3)
	ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, origin = EXCLUDED.origin,
		hlc = CASE WHEN (r.hlc, r.origin) < (EXCLUDED.hlc, EXCLUDED.origin) THEN EXCLUDED.hlc ELSE r.hlc + 1 END,
		updated_at = CURRENT_TIMESTAMP
	RETURNING hlc, created_at, updated_at
), o AS (
	INSERT INTO replication_outbox (destination, key, value, hlc, origin, created_at, written_at)
	SELECT d, $1, $2, w.hlc, $3, w.created_at, w.updated_at FROM w CROSS JOIN unnest($5::text[]) AS d
)
SELECT hlc, created_at, updated_at FROM w`

	selectSQL = `SELECT value, hlc, origin, created_at, updated_at FROM records WHERE key = $1`

	// applySQL applies replicated writes, each only if newer than the stored version, and
	// returns the keys it changed. The row keeps the origin's timestamps: updated_at is when
	// the write was made, created_at the earliest first write known.
	applySQL = `INSERT INTO records AS r (key, value, region, hlc, origin, created_at, updated_at)
SELECT e.key, e.value, $1, e.hlc, e.origin, e.created_at, e.written_at
FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamp[], $7::timestamp[])
	AS e(key, value, hlc, origin, created_at, written_at)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, hlc = EXCLUDED.hlc, origin = EXCLUDED.origin,
	updated_at = EXCLUDED.updated_at, created_at = LEAST(r.created_at, EXCLUDED.created_at)
WHERE (r.hlc, r.origin) < (EXCLUDED.hlc, EXCLUDED.origin)
RETURNING key`

	// pendingSQL is the oldest entries for one destination: at most $2 of them, and no more
	// bytes of values than $3 (but always the first).
	pendingSQL = `SELECT id, key, value, hlc, origin, created_at, written_at FROM (
	SELECT id, key, value, hlc, origin, created_at, written_at,
		sum(octet_length(value)) OVER (ORDER BY id) - octet_length(value) AS before
	FROM replication_outbox WHERE destination = $1 ORDER BY id LIMIT $2
) AS batch WHERE before < $3 ORDER BY id`

	ackSQL     = `DELETE FROM replication_outbox WHERE id = ANY($1::bigint[])`
	backlogSQL = `SELECT destination, count(*),
	COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(queued_at))::float8, 0)
FROM replication_outbox GROUP BY destination`
	countSQL = `SELECT count(*), count(*) FILTER (WHERE origin = $1) FROM records`
)

// Entry is one version of a record: what a region stores, caches and ships.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Version
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Pending is an outbox entry waiting for its destination.
type Pending struct {
	ID int64
	Entry
}

// Backlog is what one source region holds for one destination.
type Backlog struct {
	Entries    int64   `json:"backlog_entries"` // writes not yet applied at the destination
	LagSeconds float64 `json:"lag_seconds"`     // age of the oldest of them; 0 when none
}

// RegionSpec names a region and its servers.
type RegionSpec struct {
	Key         string // routing key, e.g. "us-east"
	DatabaseURL string
	CacheURL    string
	// ReplicationURL is how replication reaches the region's database: the shippers read
	// and acknowledge its outbox, and apply other regions' writes to it, over connections
	// of their own. "" is DatabaseURL. Between real regions it is another network path
	// than the region's own requests take; tests cut it to partition the regions.
	ReplicationURL string
	// Now is the region's physical clock; nil is time.Now. Tests skew it to show that the
	// regions converge, and that causality is kept, whatever the clocks say.
	Now func() time.Time
}

// RegionOptions are the settings every region shares.
type RegionOptions struct {
	Pool     pgstore.PoolConfig
	CacheTTL time.Duration // lifetime of a cached record
	// Skip says when a region's database is skipped: after Threshold calls in a row failed
	// (timed out, refused, broken), its calls are refused at once for Timeout, and then
	// one call (a health check, normally) probes it. Zero fields: 3 calls, 1 s.
	Skip breaker.Settings
	// ReplicationConns bounds each region's replication pool; 0: 4, a shipper in and one
	// out for each of two other regions.
	ReplicationConns int32
}

func (o RegionOptions) withDefaults() RegionOptions {
	if o.Skip.Threshold == 0 {
		o.Skip.Threshold = 3
	}
	if o.Skip.Timeout <= 0 {
		o.Skip.Timeout = time.Second
	}
	if o.ReplicationConns <= 0 {
		o.ReplicationConns = 4
	}
	return o
}

// Region is one region's PostgreSQL (records and outbox) and Redis (the read cache), with
// the region's clock. Its operations are what one region does locally; calls between
// regions are the Router's business.
//
// The database has two pools: one for the region's requests, health checks and stats,
// behind a guard that skips the database once it fails or hangs; and a small one for
// replication, so that shipping never takes a request's connection and a cut between
// regions does not take the region out of service. The shippers back off on their own.
type Region struct {
	key, name string
	pool      *pgstore.Pool  // requests, health checks, stats
	repl      *pgstore.Pool  // replication: the outbox read and acknowledged, replicated writes applied
	guard     *breaker.Guard // around every call on pool
	rdb       *redisclient.Client
	cache     *cache.Leased[Entry]
	clock     *Clock
	logger    *slog.Logger

	ready atomic.Bool // schema created
}

var (
	// errNotReady is a region whose schema could not be created yet (its database has
	// been down since start-up).
	errNotReady = errors.New("region schema not created yet")
	// errSkipped is a region whose database is being skipped.
	errSkipped = errors.New("region skipped: its database failed calls in a row; probed once per health interval")
)

// OpenRegion creates the region's pools and Redis client (all connect lazily).
func OpenRegion(ctx context.Context, spec RegionSpec, opts RegionOptions, logger *slog.Logger) (*Region, error) {
	opts = opts.withDefaults()
	logger = logger.With("region", spec.Key)
	replURL := spec.ReplicationURL
	if replURL == "" {
		replURL = spec.DatabaseURL
	}
	rdb, err := redisclient.New(spec.CacheURL)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", spec.Key, err)
	}
	pool, err := pgstore.NewPool(ctx, spec.DatabaseURL, opts.Pool)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("region %s: %w", spec.Key, err)
	}
	repl, err := pgstore.NewPool(ctx, replURL, pgstore.PoolConfig{Timeouts: opts.Pool.Timeouts, MaxConns: opts.ReplicationConns})
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, fmt.Errorf("region %s replication: %w", spec.Key, err)
	}
	r := &Region{
		key: spec.Key, name: Name(spec.Key), pool: pool, repl: repl, rdb: rdb,
		cache: cache.NewLeased[Entry](rdb, opts.CacheTTL, logger), clock: NewClock(spec.Now), logger: logger,
	}
	skip := opts.Skip
	skip.OnStateChange = func(_ string, from, to breaker.State) {
		if from == breaker.Closed && to == breaker.Open {
			logger.Warn("region skipped: its database failed calls in a row", "calls", skip.Threshold, "probe_every", skip.Timeout)
			// Its open connections may hang or be broken: the probe and the calls after it
			// get new ones (those in use are closed when released).
			pool.Reset()
		}
	}
	if r.guard, err = breaker.NewGuard(r.name+" database", skip, nil); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Key is the region's routing key ("us-east").
func (r *Region) Key() string { return r.key }

// Name is its display name ("US-EAST").
func (r *Region) Name() string { return r.name }

// Clock is the region's hybrid logical clock.
func (r *Region) Clock() *Clock { return r.clock }

// Healthy reports whether the region's database is in service: its schema exists and it
// is not being skipped.
func (r *Region) Healthy() bool { return r.serving() == nil }

// Skipped reports whether the region's database is being skipped: calls to it are refused
// at once (but for a probe) after Skip.Threshold of them failed in a row.
func (r *Region) Skipped() bool { return r.guard.State() != breaker.Closed }

// serving is nil when the region's database is in service, else why not, as the region's
// 503.
func (r *Region) serving() error {
	if err := r.usable(); err != nil {
		return err
	}
	if r.Skipped() {
		return record.Unavailable(r.name+" database", errSkipped)
	}
	return nil
}

// Close closes the Redis client and the pools.
func (r *Region) Close() {
	r.rdb.Close()
	r.repl.Close()
	r.pool.Close()
}

// EnsureSchema creates the region's tables, retrying while the database comes up, until
// ctx ends.
func (r *Region) EnsureSchema(ctx context.Context) error {
	if err := pgstore.EnsureSchema(ctx, r.pool, Schema...); err != nil {
		return r.classify(fmt.Errorf("create schema: %w", err))
	}
	r.ready.Store(true)
	return nil
}

// classify turns a database error into the region's own 503 ("EU-WEST database
// unavailable"), which counts against the region's guard; other errors stay as they are.
// A call whose caller went away (context canceled) says nothing about the region: it is
// returned as is (a 499 if anyone is still listening), and counts for nothing.
func (r *Region) classify(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	err = pgstore.Classify(err)
	if record.IsUnavailable(err) {
		return record.Unavailable(r.name+" database", err)
	}
	return err
}

// query runs fn on a connection of the region's pool, through its guard: refused at once
// while the database is skipped, otherwise bounded by the pool's query timeout (acquire
// and statement). Errors are classified, what says what failed; pgx.ErrNoRows is returned
// as is.
func (r *Region) query(ctx context.Context, what string, fn func(context.Context, *pgx.Conn) error) error {
	done, err := r.guard.Allow()
	if err != nil {
		return err
	}
	err = r.run(ctx, r.pool, what, fn)
	done(err)
	return err
}

// replicate runs fn on a connection of the replication pool, bounded by the query
// timeout. No guard: a shipper backs off on its own, and a cut replication path says
// nothing about the region's own requests.
func (r *Region) replicate(ctx context.Context, what string, fn func(context.Context, *pgx.Conn) error) error {
	return r.run(ctx, r.repl, what, fn)
}

func (r *Region) run(ctx context.Context, pool *pgstore.Pool, what string, fn func(context.Context, *pgx.Conn) error) error {
	err := pool.WithConn(ctx, fn)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return r.classify(fmt.Errorf("%s: %w", what, err))
	}
	return err
}

// usable is nil once the region's schema exists.
func (r *Region) usable() error {
	if !r.ready.Load() {
		return record.Unavailable(r.name+" database", errNotReady)
	}
	return nil
}

// Write stores a local write of key: stamped by the region's clock, and in any case newer
// than every version of key the region has stored, committed together with one outbox
// entry per destination, then invalidated in the cache. It returns what was stored.
func (r *Region) Write(ctx context.Context, key, value string, destinations []string) (Entry, error) {
	if err := r.usable(); err != nil {
		return Entry{}, err
	}
	if destinations == nil {
		destinations = []string{}
	}
	e := Entry{Key: key, Value: value, Version: Version{HLC: r.clock.Now(), Origin: r.key}}
	var hlc int64
	err := r.query(ctx, fmt.Sprintf("write %q", key), func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, writeSQL, key, value, r.key, int64(e.HLC), destinations).Scan(&hlc, &e.CreatedAt, &e.UpdatedAt)
	})
	if err != nil {
		return Entry{}, err
	}
	e.HLC = HLC(hlc)
	r.clock.Observe(e.HLC) // it may have been raised past the clock: the clock follows
	r.cache.Invalidate(ctx, cache.CacheKey(key))
	return e, nil
}

// Lookup reads key from the region's cache, else its database (filling the cache).
// A missing key is record.ErrNotFound.
func (r *Region) Lookup(ctx context.Context, key string) (e Entry, fromCache bool, err error) {
	if err := r.usable(); err != nil {
		return Entry{}, false, err
	}
	return r.cache.Lookup(ctx, cache.CacheKey(key), func(ctx context.Context) (Entry, error) { return r.get(ctx, key) })
}

func (r *Region) get(ctx context.Context, key string) (Entry, error) {
	e := Entry{Key: key}
	var hlc int64
	err := r.query(ctx, fmt.Sprintf("select %q", key), func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, selectSQL, key).Scan(&e.Value, &hlc, &e.Origin, &e.CreatedAt, &e.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, record.ErrNotFound
	}
	if err != nil {
		return Entry{}, err
	}
	e.HLC = HLC(hlc)
	return e, nil
}

// Apply stores replicated writes, each only where it is newer than the stored version,
// in one statement; then it invalidates the cached copies of the keys that changed and
// lets the region's clock observe the writes. Applying an entry twice changes nothing,
// so a batch may be delivered more than once. It returns how many rows changed.
func (r *Region) Apply(ctx context.Context, entries []Entry) (int, error) {
	if err := r.usable(); err != nil {
		return 0, err
	}
	// One statement cannot change a row twice: keep the newest entry of each key.
	newest := make(map[string]int, len(entries))
	batch := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if i, ok := newest[e.Key]; ok {
			if e.Newer(batch[i].Version) {
				batch[i] = e
			}
			continue
		}
		newest[e.Key] = len(batch)
		batch = append(batch, e)
	}
	n := len(batch)
	keys, values, origins := make([]string, n), make([]string, n), make([]string, n)
	hlcs, created, written := make([]int64, n), make([]time.Time, n), make([]time.Time, n)
	var latest HLC
	for i, e := range batch {
		keys[i], values[i], hlcs[i], origins[i], created[i], written[i] = e.Key, e.Value, int64(e.HLC), e.Origin, e.CreatedAt, e.UpdatedAt
		latest = max(latest, e.HLC)
	}
	var changed []string
	err := r.replicate(ctx, fmt.Sprintf("apply %d replicated writes", n), func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, applySQL, r.key, keys, values, hlcs, origins, created, written)
		if err != nil {
			return err
		}
		changed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return 0, err
	}
	r.clock.Observe(latest)
	for i, key := range changed {
		changed[i] = cache.CacheKey(key)
	}
	r.cache.InvalidateMany(ctx, changed...)
	return len(changed), nil
}

// Pending returns the oldest outbox entries for destination: at most limit of them, and
// (past the first) no more than maxBytes of values.
func (r *Region) Pending(ctx context.Context, destination string, limit int, maxBytes int64) ([]Pending, error) {
	if err := r.usable(); err != nil {
		return nil, err
	}
	var out []Pending
	err := r.replicate(ctx, "read outbox for "+destination, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, pendingSQL, destination, limit, maxBytes)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Pending, error) {
			var p Pending
			var hlc int64
			err := row.Scan(&p.ID, &p.Key, &p.Value, &hlc, &p.Origin, &p.CreatedAt, &p.UpdatedAt)
			p.HLC = HLC(hlc)
			return p, err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Ack deletes delivered outbox entries.
func (r *Region) Ack(ctx context.Context, ids []int64) error {
	return r.replicate(ctx, fmt.Sprintf("acknowledge %d outbox entries", len(ids)), func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, ackSQL, ids)
		return err
	})
}

// Backlogs returns, per destination, what the outbox still holds.
func (r *Region) Backlogs(ctx context.Context) (map[string]Backlog, error) {
	if err := r.usable(); err != nil {
		return nil, err
	}
	out := map[string]Backlog{}
	err := r.query(ctx, "outbox backlog", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, backlogSQL)
		if err != nil {
			return err
		}
		var dest string
		var b Backlog
		_, err = pgx.ForEachRow(rows, []any{&dest, &b.Entries, &b.LagSeconds}, func() error {
			out[dest] = b
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Counts are a region's record counts.
type Counts struct {
	Total      int64 // rows in records
	Originated int64 // of them, rows whose current version was written in this region
}

// Count counts the region's records.
func (r *Region) Count(ctx context.Context) (Counts, error) {
	if err := r.usable(); err != nil {
		return Counts{}, err
	}
	var n Counts
	err := r.query(ctx, "count records", func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, countSQL, r.key).Scan(&n.Total, &n.Originated)
	})
	return n, err
}

// PoolSize is the number of open database connections (the original's live pool_size).
func (r *Region) PoolSize() int32 { return r.pool.Stat().TotalConns() }

// CacheKeys is DBSIZE of the region's Redis database.
func (r *Region) CacheKeys(ctx context.Context) (int64, error) { return r.rdb.DBSize(ctx).Result() }

// Check pings the database and the cache (PING), and creates the schema if it is missing
// and the database answers. The database's ping goes through the region's guard: it
// counts like any call, and while the database is skipped it is the probe that finds it
// back (or is refused at once, an error that State calls "skipped").
func (r *Region) Check(ctx context.Context) (dbErr, cacheErr error) {
	dbErr = r.query(ctx, "ping", func(ctx context.Context, c *pgx.Conn) error { return c.Ping(ctx) })
	if dbErr == nil && !r.ready.Load() {
		dbErr = r.EnsureSchema(ctx)
	}
	cacheErr = redisclient.Ping(ctx, r.rdb)
	return dbErr, cacheErr
}

// State is the word /health and /stats use for a database or cache after a check:
// "healthy" (it answered), "skipped" (its guard refused the check: calls to it are
// refused at once until a probe finds it back) or "unavailable" (it failed).
func State(err error) string {
	switch {
	case err == nil:
		return "healthy"
	case errors.Is(err, breaker.ErrOpen):
		return "skipped"
	}
	return "unavailable"
}
