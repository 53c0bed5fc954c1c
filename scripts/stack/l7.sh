# shellcheck shell=bash
# L7, CQRS: a write database (commands + outbox), a read database (read model), the API and
# the projector process (docker-compose/l7.yml). No Redis: the projector reads the outbox.
# Verbs: see the header of scripts/stack.sh.
pg      l7-write-db  5447 write_db
pg      l7-read-db   5448 read_db
service l7           8007 WRITE_DB_URL=postgresql://dbuser:dbpassword@127.0.0.1:5447/write_db \
	READ_DB_URL=postgresql://dbuser:dbpassword@127.0.0.1:5448/read_db DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10
process l7-projector WRITE_DB_URL=postgresql://dbuser:dbpassword@127.0.0.1:5447/write_db \
	READ_DB_URL=postgresql://dbuser:dbpassword@127.0.0.1:5448/read_db DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 \
	PROJECTOR_BATCH_SIZE=100 PROJECTOR_POLL_INTERVAL=100ms
