# shellcheck shell=bash
# L4, sharding: three PostgreSQL clusters, one per shard, with Redis cache-aside in front
# (docker-compose/l4.yml). Adding a shard online: layers/l4/README.md ("Adding a shard").
# Verbs: see the header of scripts/stack.sh.
pg      l4-shard-0 5440 appdb_shard_0
pg      l4-shard-1 5441 appdb_shard_1
pg      l4-shard-2 5442 appdb_shard_2
redis   l4-redis   6381
service l4         8004 SHARD_0_URL=postgresql://dbuser:dbpassword@127.0.0.1:5440/appdb_shard_0 \
	SHARD_1_URL=postgresql://dbuser:dbpassword@127.0.0.1:5441/appdb_shard_1 \
	SHARD_2_URL=postgresql://dbuser:dbpassword@127.0.0.1:5442/appdb_shard_2 \
	NUM_SHARDS=3 SHARD_STRATEGY=modulo REDIS_URL=redis://127.0.0.1:6381 \
	DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 CACHE_TTL=300
