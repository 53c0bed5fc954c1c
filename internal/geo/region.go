package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

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
	// Now is the region's physical clock; nil is time.Now. Tests skew it to show that the
	// regions converge, and that causality is kept, whatever the clocks say.
	Now func() time.Time
}

// RegionOptions are the settings every region shares.
type RegionOptions struct {
	Pool     pgstore.PoolConfig
	CacheTTL time.Duration // lifetime of a cached record
}

// Region is one region's PostgreSQL (records and outbox) and Redis (the read cache), with
// the region's clock. Its operations are what one region does locally; calls between
// regions are the Router's business.
type Region struct {
	key, name string
	pool      *pgstore.Pool
	db        *pgstore.Store
	rdb       *redisclient.Client
	cache     *cache.Leased[Entry]
	clock     *Clock
	logger    *slog.Logger

	ready atomic.Bool // schema created
	dbUp  atomic.Bool // last database check or call succeeded
}

// errNotReady is a region whose schema could not be created yet (its database has been
// down since start-up).
var errNotReady = errors.New("region schema not created yet")

// OpenRegion creates the region's pool and Redis client (both connect lazily).
func OpenRegion(ctx context.Context, spec RegionSpec, opts RegionOptions, logger *slog.Logger) (*Region, error) {
	rdb, err := redisclient.New(spec.CacheURL)
	if err != nil {
		return nil, fmt.Errorf("region %s: %w", spec.Key, err)
	}
	pool, err := pgstore.NewPool(ctx, spec.DatabaseURL, opts.Pool)
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("region %s: %w", spec.Key, err)
	}
	logger = logger.With("region", spec.Key)
	r := &Region{
		key: spec.Key, name: Name(spec.Key), pool: pool, db: pgstore.NewStore(pool), rdb: rdb,
		cache: cache.NewLeased[Entry](rdb, opts.CacheTTL, logger), clock: NewClock(spec.Now), logger: logger,
	}
	return r, nil
}

// Key is the region's routing key ("us-east").
func (r *Region) Key() string { return r.key }

// Name is its display name ("US-EAST").
func (r *Region) Name() string { return r.name }

// Clock is the region's hybrid logical clock.
func (r *Region) Clock() *Clock { return r.clock }

// Healthy reports whether the region's database is believed to serve: its schema exists
// and the last check or call reached it.
func (r *Region) Healthy() bool { return r.ready.Load() && r.dbUp.Load() }

// Close closes the Redis client and the pool.
func (r *Region) Close() {
	r.rdb.Close()
	r.pool.Close()
}

// EnsureSchema creates the region's tables, retrying while the database comes up, until
// ctx ends.
func (r *Region) EnsureSchema(ctx context.Context) error {
	if err := pgstore.EnsureSchema(ctx, r.pool, Schema...); err != nil {
		return r.classify(fmt.Errorf("create schema: %w", err))
	}
	r.ready.Store(true)
	r.dbUp.Store(true)
	return nil
}

// classify turns a database error into the region's own 503 ("EU-WEST database
// unavailable"), marking the region down; other errors stay as they are. A call whose
// caller went away (context canceled) says nothing about the region: it is returned as is
// (a 499 if anyone is still listening), and the region keeps serving.
func (r *Region) classify(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	err = pgstore.Classify(err)
	if record.IsUnavailable(err) {
		r.dbUp.Store(false)
		return record.Unavailable(r.name+" database", err)
	}
	return err
}

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
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, writeSQL, key, value, r.key, int64(e.HLC), destinations).Scan(&hlc, &e.CreatedAt, &e.UpdatedAt)
	})
	if err != nil {
		return Entry{}, r.classify(fmt.Errorf("write %q: %w", key, err))
	}
	r.dbUp.Store(true)
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
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, selectSQL, key).Scan(&e.Value, &hlc, &e.Origin, &e.CreatedAt, &e.UpdatedAt)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		r.dbUp.Store(true)
		return Entry{}, record.ErrNotFound
	}
	if err != nil {
		return Entry{}, r.classify(fmt.Errorf("select %q: %w", key, err))
	}
	r.dbUp.Store(true)
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
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, applySQL, r.key, keys, values, hlcs, origins, created, written)
		if err != nil {
			return err
		}
		changed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return 0, r.classify(fmt.Errorf("apply %d replicated writes: %w", n, err))
	}
	r.dbUp.Store(true)
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
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
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
		return nil, r.classify(fmt.Errorf("read outbox for %s: %w", destination, err))
	}
	return out, nil
}

// Ack deletes delivered outbox entries.
func (r *Region) Ack(ctx context.Context, ids []int64) error {
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, ackSQL, ids)
		return err
	})
	if err != nil {
		return r.classify(fmt.Errorf("acknowledge %d outbox entries: %w", len(ids), err))
	}
	return nil
}

// Backlogs returns, per destination, what the outbox still holds.
func (r *Region) Backlogs(ctx context.Context) (map[string]Backlog, error) {
	if err := r.usable(); err != nil {
		return nil, err
	}
	out := map[string]Backlog{}
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
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
		return nil, r.classify(fmt.Errorf("outbox backlog: %w", err))
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
	err := r.pool.WithConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, countSQL, r.key).Scan(&n.Total, &n.Originated)
	})
	if err != nil {
		return Counts{}, r.classify(fmt.Errorf("count records: %w", err))
	}
	return n, nil
}

// PoolSize is the number of open database connections (the original's live pool_size).
func (r *Region) PoolSize() int32 { return r.pool.Stat().TotalConns() }

// CacheKeys is DBSIZE of the region's Redis database.
func (r *Region) CacheKeys(ctx context.Context) (int64, error) { return r.rdb.DBSize(ctx).Result() }

// Check pings the database (SELECT 1) and the cache (PING), records the results, and
// creates the schema if it is missing and the database answers.
func (r *Region) Check(ctx context.Context) (dbErr, cacheErr error) {
	dbErr = r.db.Ping(ctx)
	if dbErr == nil && !r.ready.Load() {
		dbErr = r.EnsureSchema(ctx)
	}
	r.dbUp.Store(dbErr == nil)
	cacheErr = redisclient.Ping(ctx, r.rdb)
	return dbErr, cacheErr
}
