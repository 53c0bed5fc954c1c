# shellcheck shell=bash
# L9, global distribution: three regions, each a PostgreSQL and a Redis of its own, and one
# service routing by X-Region and replicating between them (docker-compose/l9.yml).
# INTER_REGION_LATENCY=80ms before `up` simulates the distance between regions (0 = none).
# Verbs: see the header of scripts/stack.sh.
pg      l9-db-us-east      5450 global_db
pg      l9-db-eu-west      5451 global_db
pg      l9-db-asia-pac     5452 global_db
redis   l9-cache-us-east   6387
redis   l9-cache-eu-west   6388
redis   l9-cache-asia-pac  6389
service l9                 8009 DB_US_EAST_URL=postgresql://dbuser:dbpassword@127.0.0.1:5450/global_db \
	DB_EU_WEST_URL=postgresql://dbuser:dbpassword@127.0.0.1:5451/global_db \
	DB_ASIA_PAC_URL=postgresql://dbuser:dbpassword@127.0.0.1:5452/global_db \
	CACHE_US_EAST_URL=redis://127.0.0.1:6387 CACHE_EU_WEST_URL=redis://127.0.0.1:6388 \
	CACHE_ASIA_PAC_URL=redis://127.0.0.1:6389 DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 \
	REPLICATION_ENABLED=true CACHE_TTL=300 INTER_REGION_LATENCY="${INTER_REGION_LATENCY:-0}"
