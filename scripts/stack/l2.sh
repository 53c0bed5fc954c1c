# shellcheck shell=bash
# L2, read cache: PostgreSQL with Redis cache-aside in front (docker-compose/l2.yml).
# Verbs: see the header of scripts/stack.sh.
pg      l2-db    5434 appdb
redis   l2-redis 6379
service l2       8002 DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5434/appdb \
	REDIS_URL=redis://127.0.0.1:6379 CACHE_TTL=300
