# shellcheck shell=bash
# L5, multi-tier cache: in-process L1 over Redis L2 over PostgreSQL (docker-compose/l5.yml).
# Verbs: see the header of scripts/stack.sh.
pg      l5-db    5445 appdb
redis   l5-redis 6382
service l5       8005 DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5445/appdb \
	REDIS_URL=redis://127.0.0.1:6382 DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 \
	L1_CACHE_SIZE=100 L1_CACHE_TTL=60 L2_CACHE_TTL=300
