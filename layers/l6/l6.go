// Package l6 is layer 6, write buffering: POST /write appends the write to a Redis Stream
// and answers as soon as Redis has it; workers (cmd/l6-worker, or inside this process with
// WORKER_ENABLED) apply the queued writes to PostgreSQL in batches, one statement per
// batch. Reads see your writes: a key with a queued write reads as that write, other keys
// through the Redis cache-aside of layer 2. The buffer itself is internal/writequeue; this
// package wires it to HTTP (see README.md for what survives which crash).
package l6

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/apidoc"
	"github.com/dblayers/dblayers/internal/breaker"
	"github.com/dblayers/dblayers/internal/cache"
	"github.com/dblayers/dblayers/internal/httpapi"
	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/record"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/writequeue"
)

// Layer is the health "layer" string.
const Layer = "6-write-buffering"

// WriteMessage is the message of an accepted write.
const WriteMessage = "Write queued successfully"

// Backends are the settings the API and the worker process share (the original's names
// and defaults, plus the worker's new knobs in writequeue.WorkerConfig).
type Backends struct {
	DatabaseURL string `env:"DATABASE_URL" default:"postgresql://dbuser:dbpassword@localhost:5446/appdb"`
	RedisURL    string `env:"REDIS_URL" default:"redis://localhost:6383"`
	QueueName   string `env:"WRITE_QUEUE_NAME" default:"write_queue"` // the stream; its other keys derive from it
	Pool        pgstore.PoolConfig
	Worker      writequeue.WorkerConfig
}

// Config is the API's environment.
type Config struct {
	Server httpapi.ServerConfig
	Backends
	CacheTTL time.Duration `env:"CACHE_TTL" default:"300s"` // how long a cached record lives
	// MaxBacklog bounds the writes queued and not yet applied; past it /write answers 503.
	MaxBacklog int64 `env:"WRITE_QUEUE_MAX_BACKLOG" default:"100000"`
	// WorkerEnabled runs workers inside the API process too (the original declared this
	// setting and never read it). The compose file and the stack run cmd/l6-worker instead.
	WorkerEnabled bool `env:"WORKER_ENABLED" default:"false"`
}

// Service is a running L6 API.
type Service struct {
	pool    *pgstore.Pool
	rdb     *redisclient.Client
	db      *pgstore.Store
	cache   *cache.Aside
	queue   *writequeue.Queue
	store   *writequeue.Store
	handler http.Handler

	stopWorkers context.CancelFunc
	workersDone chan struct{}
}

// New connects to PostgreSQL (required: it creates the schema) and Redis (it may come up
// later: until then writes and reads answer 503), and starts workers if WorkerEnabled.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	rdb, err := redisclient.New(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	pool, err := openDatabase(ctx, cfg.Backends)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	queue := writequeue.NewQueue(rdb, cfg.QueueName, cfg.MaxBacklog)
	if err := writequeue.EnsureGroup(ctx, rdb, queue.Names()); err != nil {
		logger.Warn("cannot create the queue's consumer group yet; the workers will", "error", err)
	}
	db := pgstore.NewStore(pool)
	aside := cache.NewAside(rdb, db, cfg.CacheTTL, logger)
	s := &Service{pool: pool, rdb: rdb, db: db, cache: aside, queue: queue, store: writequeue.NewStore(queue, aside)}
	r := apidoc.NewRouter(httpapi.Options{Layer: Layer, Logger: logger, Limits: cfg.Server.Limits()}, apiInfo)
	r.Post("/write", httpapi.Handle(s.write), opWrite)
	r.Get("/read/{key}", httpapi.Handle(httpapi.ReadVia(s.store, readAnswer)), opRead)
	r.Get("/health", httpapi.Handle(s.health), opHealth)
	r.Stats(httpapi.Handle(s.stats), opStats, "/stats")
	s.handler = r

	if cfg.WorkerEnabled {
		wctx, cancel := context.WithCancel(context.Background())
		s.stopWorkers, s.workersDone = cancel, make(chan struct{})
		go func() {
			defer close(s.workersDone)
			runWorkers(wctx, rdb, pool, cfg.Backends, logger)
		}()
	}
	return s, nil
}

// Handler is the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Close stops taking writes, lets in-process workers finish their batches, then closes
// Redis and the pool.
func (s *Service) Close() {
	s.queue.Close()
	if s.stopWorkers != nil {
		s.stopWorkers()
		<-s.workersDone
	}
	s.rdb.Close()
	s.pool.Close()
}

// WriteResponse is the answer of an accepted write.
type WriteResponse struct {
	Success bool   `json:"success"`
	Key     string `json:"key"`
	Queued  bool   `json:"queued"`
	Message string `json:"message"`
}

// write answers once Redis holds the write (appendfsync decides when it is on disk).
func (s *Service) write(r *http.Request) (any, error) {
	req, _, err := httpapi.DecodeWrite(r)
	if err != nil {
		return nil, err
	}
	switch err := s.store.Put(r.Context(), req.Key, req.Value); {
	case errors.Is(err, writequeue.ErrBacklogFull):
		return nil, httpapi.Errorf(http.StatusServiceUnavailable,
			"Write queue is full (%d writes waiting to be applied): try again later", s.queue.MaxBacklog())
	case err != nil:
		return nil, err
	}
	return WriteResponse{Success: true, Key: req.Key, Queued: true, Message: WriteMessage}, nil
}

// ReadResponse adds where the record came from: from_cache (the read cache) as in the
// original, and buffered: the value is a queued write not yet applied to PostgreSQL.
type ReadResponse struct {
	httpapi.ReadFields
	FromCache bool `json:"from_cache"`
	Buffered  bool `json:"buffered"`
}

func readAnswer(f httpapi.ReadFields, r record.Read) any {
	return ReadResponse{ReadFields: f, FromCache: r.Tier == record.FromCache, Buffered: r.Tier == record.FromBuffer}
}

// HealthResponse is the original's health document plus the running workers and the
// state of the Redis client's guard.
type HealthResponse struct {
	Status          string                   `json:"status"`
	Layer           string                   `json:"layer"`
	Database        string                   `json:"database"`
	Cache           string                   `json:"cache"`
	Queue           string                   `json:"queue"`
	QueueLength     int64                    `json:"queue_length"`
	Workers         int64                    `json:"workers"`
	CircuitBreakers map[string]breaker.State `json:"circuit_breakers"`
}

// health is 503 when PostgreSQL or the queue's Redis is down: reads need the one, writes
// the other. While the Redis client's guard is open (Redis failed, and is called only by a
// probe a second) the answer says so: the queue is refused, not waited on. No running
// worker is not unhealthy for the API (writes still queue), but shows as workers: 0.
func (s *Service) health(r *http.Request) (any, error) {
	if err := s.db.Ping(r.Context()); err != nil {
		return nil, httpapi.Unhealthy("Service unhealthy: database unavailable", err)
	}
	st, err := s.queue.Stats(r.Context())
	switch {
	case errors.Is(err, breaker.ErrOpen):
		return nil, httpapi.Unhealthy("Service unhealthy: queue unavailable (its Redis failed: circuit breaker open)", err)
	case err != nil:
		return nil, httpapi.Unhealthy("Service unhealthy: queue unavailable", err)
	}
	return HealthResponse{Status: "healthy", Layer: Layer, Database: "healthy", Cache: "healthy",
		Queue: "healthy", QueueLength: st.Length, Workers: st.Workers, CircuitBreakers: s.breakers()}, nil
}

// breakers is the state of the guard of the Redis client that the queue and the cache share.
func (s *Service) breakers() map[string]breaker.State {
	return map[string]breaker.State{"Redis": s.rdb.State()}
}

// StatsResponse is the original's /stats document with real values, then the queue's
// health: the numeric fields are null while Redis is unreachable.
type StatsResponse struct {
	CacheAvailable  bool     `json:"cache_available"`
	CacheHits       *int64   `json:"cache_hits"`     // this process
	CacheMisses     *int64   `json:"cache_misses"`   // this process
	CacheKeys       *int64   `json:"cache_keys"`     // keys in the Redis database (cache and queue)
	CacheHitRate    *float64 `json:"cache_hit_rate"` // percent
	DBPoolSize      int32    `json:"db_pool_size"`   // open connections of this process
	QueueLength     *int64   `json:"queue_length"`   // writes not yet applied
	WritesQueued    *int64   `json:"writes_queued"`  // every API process
	WritesProcessed *int64   `json:"writes_processed"`
	Pending         *int64   `json:"pending"` // delivered to a worker, not yet acknowledged
	DeadLettered    *int64   `json:"dead_lettered"`
	OldestAge       *float64 `json:"oldest_pending_age_seconds"`
	Workers         *int64   `json:"workers"`
	MaxBacklog      int64    `json:"max_backlog"`
	// The Redis client's guard: "open" while Redis failed and the queue is refused at once.
	CircuitBreakers map[string]breaker.State `json:"circuit_breakers"`
}

func (s *Service) stats(r *http.Request) (any, error) {
	c := s.cache.Stats(r.Context())
	out := StatsResponse{
		CacheAvailable: c.Available, CacheHits: c.Hits, CacheMisses: c.Misses, CacheKeys: c.Keys,
		CacheHitRate: c.HitRate, DBPoolSize: s.pool.Stat().TotalConns(), MaxBacklog: s.queue.MaxBacklog(),
		CircuitBreakers: s.breakers(),
	}
	if q, err := s.queue.Stats(r.Context()); err == nil {
		out.QueueLength, out.WritesQueued, out.WritesProcessed = &q.Length, &q.Queued, &q.Processed
		out.Pending, out.DeadLettered, out.OldestAge, out.Workers = &q.Pending, &q.DeadLettered, &q.OldestAge, &q.Workers
	}
	return out, nil
}

// openDatabase opens the pool and creates the records table with its version columns,
// waiting for the database to come up.
func openDatabase(ctx context.Context, b Backends) (*pgstore.Pool, error) {
	return pgstore.OpenPool(ctx, b.DatabaseURL, b.Pool, pgstore.Schema, writequeue.Schema)
}

// runWorkers applies queued writes until ctx ends, then drains.
func runWorkers(ctx context.Context, rdb redis.UniversalClient, pool *pgstore.Pool, b Backends, logger *slog.Logger) {
	writequeue.RunWorkers(ctx, rdb, b.QueueName, pool, cache.RecordKeys, b.Worker, logger)
}
