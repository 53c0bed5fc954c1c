# shellcheck shell=bash
# L1, connection pooling: one PostgreSQL behind a pgx pool (docker-compose/l1.yml).
# Verbs: see the header of scripts/stack.sh.
pg      l1-db 5433 appdb
service l1    8001 DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5433/appdb \
	DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10
