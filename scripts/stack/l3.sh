# shellcheck shell=bash
# L3, read replicas: a PostgreSQL primary with two hot-standby streaming replicas (cloned with
# pg_basebackup as the replication role, a slot each) and Redis cache-aside in front
# (docker-compose/l3.yml). Verbs: see the header of scripts/stack.sh.
pg      l3-primary   5435 appdb
replica l3-replica-1 5436 l3-primary
replica l3-replica-2 5437 l3-primary
redis   l3-redis     6380
service l3           8003 PRIMARY_DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5435/appdb \
	REPLICA_DATABASE_URLS=postgresql://dbuser:dbpassword@127.0.0.1:5436/appdb,postgresql://dbuser:dbpassword@127.0.0.1:5437/appdb \
	REDIS_URL=redis://127.0.0.1:6380 DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 CACHE_TTL=300 \
	REPLICA_MAX_LAG=5s REPLICA_MAX_LAG_BYTES=16777216
