package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Timeouts bound every database call, so that a failing database gives a fast 503.
type Timeouts struct {
	ConnectTimeout time.Duration `env:"DB_CONNECT_TIMEOUT" default:"2s"`  // dialing and authenticating one connection
	QueryTimeout   time.Duration `env:"DB_QUERY_TIMEOUT" default:"2s"`    // getting a connection plus running one statement
	StartupTimeout time.Duration `env:"DB_STARTUP_TIMEOUT" default:"30s"` // how long start-up waits for the database
}

// PoolConfig sizes and bounds a pool. The environment names are the original's.
type PoolConfig struct {
	Timeouts
	MinConns int32 `env:"DB_POOL_MIN_SIZE" default:"2"`  // connections kept open
	MaxConns int32 `env:"DB_POOL_MAX_SIZE" default:"10"` // upper bound on open connections
}

// ParseConnConfig parses a PostgreSQL URL and applies the settings every connection here
// shares: a connect timeout and the UTC session time zone (TIMESTAMP columns are UTC).
func ParseConnConfig(url string, connectTimeout time.Duration) (*pgx.ConnConfig, error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cc.ConnectTimeout = connectTimeout
	cc.RuntimeParams["timezone"] = "UTC"
	return cc, nil
}

// Pool is a pgxpool with the extra numbers /pool-stats reports: how many requests are
// waiting for a connection right now and for how long connections have been in use.
type Pool struct {
	*pgxpool.Pool
	queryTimeout time.Duration
	waiting      atomic.Int64
	usage        atomic.Int64 // nanoseconds connections were held
}

// NewPool opens a pool (lazily: connections are made on demand and MinConns in the
// background).
func NewPool(ctx context.Context, url string, cfg PoolConfig) (*Pool, error) {
	cc, err := ParseConnConfig(url, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pc.ConnConfig = cc
	pc.MinConns, pc.MaxConns = cfg.MinConns, cfg.MaxConns
	pc.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	return &Pool{Pool: pool, queryTimeout: cfg.QueryTimeout}, nil
}

// WithConn acquires a connection (bounded, with the statement, by QueryTimeout), runs fn
// and releases it.
func (p *Pool) WithConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.queryTimeout)
	defer cancel()
	p.waiting.Add(1)
	c, err := p.Acquire(ctx)
	p.waiting.Add(-1)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	start := time.Now()
	defer func() {
		p.usage.Add(int64(time.Since(start)))
		c.Release()
	}()
	return fn(ctx, c.Conn())
}

// PoolStats is the /pool-stats document: the original's four fields, live, plus the
// pool's own counters.
type PoolStats struct {
	PoolSize        int32   `json:"pool_size"`         // open connections (idle + in use + being made)
	PoolAvailable   int32   `json:"pool_available"`    // idle connections
	RequestsWaiting int64   `json:"requests_waiting"`  // requests in Acquire right now
	UsageMs         int64   `json:"usage_ms"`          // total time connections were held
	InUse           int32   `json:"in_use"`            // connections held by requests
	MinSize         int32   `json:"min_size"`          // configured DB_POOL_MIN_SIZE
	MaxSize         int32   `json:"max_size"`          // configured DB_POOL_MAX_SIZE
	AcquireCount    int64   `json:"acquire_count"`     // successful acquires since start
	WaitCount       int64   `json:"wait_count"`        // acquires that had to wait for a connection
	WaitTimeMs      float64 `json:"wait_time_ms"`      // total time spent waiting in those acquires
	CanceledCount   int64   `json:"canceled_acquires"` // acquires abandoned (timeout or client gone)
	NewConnsCount   int64   `json:"connections_opened"`
}

// Stats returns the live pool statistics.
func (p *Pool) Stats() PoolStats {
	s := p.Stat()
	return PoolStats{
		PoolSize:        s.TotalConns(),
		PoolAvailable:   s.IdleConns(),
		RequestsWaiting: p.waiting.Load(),
		UsageMs:         time.Duration(p.usage.Load()).Milliseconds(),
		InUse:           s.AcquiredConns(),
		MinSize:         p.Config().MinConns,
		MaxSize:         s.MaxConns(),
		AcquireCount:    s.AcquireCount(),
		WaitCount:       s.EmptyAcquireCount(),
		WaitTimeMs:      float64(s.EmptyAcquireWaitTime().Microseconds()) / 1000,
		CanceledCount:   s.CanceledAcquireCount(),
		NewConnsCount:   s.NewConnsCount(),
	}
}

// DirectConfig bounds a Direct: its timeouts and how many connections it may hold open at
// once.
type DirectConfig struct {
	Timeouts
	// MaxOpen is how many connections may be open at once (DB_MAX_OPEN_CONNECTIONS, 50).
	// PostgreSQL's default max_connections is 100: without a bound, 100 concurrent requests
	// would be refused there ("too many clients") instead of waiting here for a turn.
	MaxOpen int `env:"DB_MAX_OPEN_CONNECTIONS" default:"50"`
}

// Direct opens a new connection for every call and closes it afterwards: no pool. It is
// L0's lesson, and what each request costs without pooling. At most MaxOpen calls hold a
// connection at once; the others wait their turn within the query timeout.
type Direct struct {
	config  *pgx.ConnConfig
	timeout time.Duration
	slots   chan struct{}
	opened  atomic.Int64
	waiting atomic.Int64
}

// NewDirect returns a Direct for the database at url.
func NewDirect(url string, cfg DirectConfig) (*Direct, error) {
	if cfg.MaxOpen < 1 {
		return nil, fmt.Errorf("DB_MAX_OPEN_CONNECTIONS must be at least 1 (got %d)", cfg.MaxOpen)
	}
	cc, err := ParseConnConfig(url, cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	// One round trip per statement: a fresh connection has no prepared-statement cache to reuse.
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	return &Direct{config: cc, timeout: cfg.QueryTimeout, slots: make(chan struct{}, cfg.MaxOpen)}, nil
}

// WithConn waits for a slot, connects, runs fn and closes the connection, all within the
// query timeout.
func (d *Direct) WithConn(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	select {
	case d.slots <- struct{}{}:
	default:
		d.waiting.Add(1)
		select {
		case d.slots <- struct{}{}:
			d.waiting.Add(-1)
		case <-ctx.Done():
			d.waiting.Add(-1)
			return fmt.Errorf("wait for a connection slot: %w", ctx.Err())
		}
	}
	defer func() { <-d.slots }()
	conn, err := pgx.ConnectConfig(ctx, d.config)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	d.opened.Add(1)
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		defer ccancel()
		_ = conn.Close(cctx)
	}()
	return fn(ctx, conn)
}

// DirectStats are a Direct's numbers for /cache-stats.
type DirectStats struct {
	Pooled          bool  `json:"pooled"`             // always false: L0 has no pool
	Opened          int64 `json:"connections_opened"` // since start, one per call
	Open            int   `json:"connections_open"`   // open right now
	MaxOpen         int   `json:"max_open"`           // DB_MAX_OPEN_CONNECTIONS
	RequestsWaiting int64 `json:"requests_waiting"`   // calls waiting for a slot right now
}

// Stats returns the live numbers.
func (d *Direct) Stats() DirectStats {
	return DirectStats{Opened: d.opened.Load(), Open: len(d.slots), MaxOpen: cap(d.slots), RequestsWaiting: d.waiting.Load()}
}

// Opened is the number of connections opened since start.
func (d *Direct) Opened() int64 { return d.opened.Load() }

// OpenPool opens a pool for url and creates ddl in its database, waiting up to
// cfg.StartupTimeout for the database to come up. On error nothing is left open.
func OpenPool(ctx context.Context, url string, cfg PoolConfig, ddl ...string) (*Pool, error) {
	pools, err := OpenPools(ctx, []string{url}, []string{"database"}, cfg, ddl...)
	if err != nil {
		return nil, err
	}
	return pools[0], nil
}

// OpenPools is OpenPool for several databases at once (shards, regions): all are waited
// for in parallel within one cfg.StartupTimeout, and errors are labelled with names[i].
func OpenPools(ctx context.Context, urls, names []string, cfg PoolConfig, ddl ...string) ([]*Pool, error) {
	pools := make([]*Pool, 0, len(urls))
	closeAll := func() {
		for _, p := range pools {
			p.Close()
		}
	}
	for i, u := range urls {
		p, err := NewPool(ctx, u, cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: %w", names[i], err)
		}
		pools = append(pools, p)
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()
	errs := make([]error, len(pools))
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Go(func() {
			if err := EnsureSchema(sctx, p, ddl...); err != nil {
				errs[i] = fmt.Errorf("%s: %w", names[i], err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, err
	}
	return pools, nil
}
