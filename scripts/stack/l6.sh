# shellcheck shell=bash
# L6, write buffering: PostgreSQL, a Redis (write queue + read cache) with AOF on, the API and
# the worker process that applies the queue to PostgreSQL (docker-compose/l6.yml).
# appendfsync always: Redis answers a write only once it is fsynced, so an acknowledged write
# survives a Redis crash and a power loss alike (layers/l6/README.md).
# Verbs: see the header of scripts/stack.sh.
pg      l6-db     5446 appdb
redis   l6-redis  6383 --appendonly yes --appendfsync always
service l6        8006 DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5446/appdb \
	REDIS_URL=redis://127.0.0.1:6383 DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 CACHE_TTL=300 \
	WRITE_QUEUE_NAME=write_queue WRITE_QUEUE_MAX_BACKLOG=100000 WORKER_ENABLED=false
process l6-worker DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5446/appdb \
	REDIS_URL=redis://127.0.0.1:6383 DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 WRITE_QUEUE_NAME=write_queue \
	WORKER_BATCH_SIZE=500 WORKER_CONCURRENCY=2 WORKER_POLL_INTERVAL=1 WORKER_CLAIM_MIN_IDLE=30 WORKER_MAX_ATTEMPTS=5
