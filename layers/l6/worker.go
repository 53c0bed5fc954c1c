package l6

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dblayers/dblayers/internal/pgstore"
	"github.com/dblayers/dblayers/internal/redisclient"
	"github.com/dblayers/dblayers/internal/writequeue"
)

// WorkerConfig is the environment of the worker process (cmd/l6-worker, the original's
// compose `worker` service).
type WorkerConfig struct {
	Backends
	LogLevel string `env:"LOG_LEVEL" default:"info"` // debug, info, warn or error
}

// WorkerProcess applies queued writes to PostgreSQL.
type WorkerProcess struct {
	cfg    WorkerConfig
	rdb    *redisclient.Client
	pool   *pgstore.Pool
	logger *slog.Logger
}

// NewWorkerProcess connects to PostgreSQL (waiting up to DB_STARTUP_TIMEOUT for it, and
// creating the schema) and prepares the Redis client. Redis may come up later: the
// workers retry.
func NewWorkerProcess(ctx context.Context, cfg WorkerConfig, logger *slog.Logger) (*WorkerProcess, error) {
	opt, err := redisclient.Options(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	// Longer timeouts than the API's: a worker's scripts carry whole batches, and nobody
	// waits on them; a failed call is retried by the worker, never by the client. Guarded
	// like every client: while Redis fails, the workers' retries are refused at once
	// instead of each waiting its timeout, and a stop is not held up by them.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 5*time.Second, 5*time.Second
	rdb, err := redisclient.Guarded(redis.NewClient(opt))
	if err != nil {
		return nil, err
	}
	pool, err := openDatabase(ctx, cfg.Backends)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &WorkerProcess{cfg: cfg, rdb: rdb, pool: pool, logger: logger}, nil
}

// Run applies writes until ctx ends (SIGTERM), then finishes the batches in hand.
func (p *WorkerProcess) Run(ctx context.Context) {
	if err := writequeue.EnsureGroup(ctx, p.rdb, writequeue.NamesFor(p.cfg.QueueName)); err != nil {
		p.logger.Warn("cannot create the consumer group yet; retrying while reading", "error", err)
	}
	runWorkers(ctx, p.rdb, p.pool, p.cfg.Backends, p.logger)
}

// CheckWorker is the worker container's health check: nil if a worker of this process's
// kind (consumer names starting with WORKER_CONSUMER, else with this host's name) sent a
// heartbeat within writequeue.WorkerSeen. It needs Redis only.
func CheckWorker(ctx context.Context, cfg WorkerConfig) error {
	rdb, err := redisclient.New(cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	prefix := cfg.Worker.Consumer
	if prefix == "" {
		host, _ := os.Hostname()
		prefix = host + "-"
	}
	live, err := writequeue.LiveWorkers(ctx, rdb, writequeue.NamesFor(cfg.QueueName))
	if err != nil {
		return err
	}
	for _, name := range live {
		if strings.HasPrefix(name, prefix) {
			return nil
		}
	}
	return fmt.Errorf("no heartbeat from a worker named %s* within %s", prefix, writequeue.WorkerSeen)
}

// Close closes Redis, then the pool.
func (p *WorkerProcess) Close() {
	p.rdb.Close()
	p.pool.Close()
}
