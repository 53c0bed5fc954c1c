# shellcheck shell=bash
# L10, enterprise: two PostgreSQL shards behind circuit breakers, an in-process L1 over a Redis
# L2, a Redis for the rate limits, API keys or JWTs (docker-compose/l10.yml, without its
# Prometheus and Grafana: scrape http://127.0.0.1:8010/metrics with your own).
# ENVIRONMENT defaults to development here, which accepts the development key
# enterprise-api-key-demo. Real credentials: export API_KEYS=id:key,... (or API_KEY_HASHES,
# JWT_SECRET, JWT_PUBLIC_KEY) before `up` (the service inherits the environment, and nothing
# lands on a command line), and ENVIRONMENT=production to drop the development key.
# RATE_LIMIT_REQUESTS / RATE_LIMIT_WINDOW likewise (layers/l10/README.md benchmarks with a high limit).
# Verbs: see the header of scripts/stack.sh.
pg      l10-db-shard1    5453 enterprise_db
pg      l10-db-shard2    5454 enterprise_db
redis   l10-cache-l2     6391
redis   l10-rate-limiter 6392
service l10              8010 DB_SHARD1_URL=postgresql://dbuser:dbpassword@127.0.0.1:5453/enterprise_db \
	DB_SHARD2_URL=postgresql://dbuser:dbpassword@127.0.0.1:5454/enterprise_db \
	CACHE_L2_URL=redis://127.0.0.1:6391 RATE_LIMITER_URL=redis://127.0.0.1:6392 \
	DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=20 CACHE_TTL=300 \
	RATE_LIMIT_REQUESTS="${RATE_LIMIT_REQUESTS:-100}" RATE_LIMIT_WINDOW="${RATE_LIMIT_WINDOW:-60}" \
	CIRCUIT_BREAKER_THRESHOLD=5 CIRCUIT_BREAKER_TIMEOUT=30 AUTH_ENABLED=true \
	ENVIRONMENT="${ENVIRONMENT:-development}" ENABLE_METRICS=true
