# shellcheck shell=bash
# L8, polyglot persistence: PostgreSQL for transactions, a MongoDB-compatible server for
# documents (FerretDB from tools/ferretdb: MongoDB is not packaged in Debian; compose runs the
# real mongo:7), Redis caching reads of both (docker-compose/l8.yml). FerretDB keeps its
# documents in a PostgreSQL cluster of its own (l8-mongo-db), not in l8-db, so that stopping
# either store leaves the other one up, as the two containers of compose do
# (layers/l8/README.md). The local FerretDB has no users, so MONGODB_URL carries no credentials.
# Verbs: see the header of scripts/stack.sh.
pg       l8-db       5449 transactional_db
pg       l8-mongo-db 5455 ferretdb
ferretdb l8-mongo    27017 postgresql://dbuser:dbpassword@127.0.0.1:5455/ferretdb
redis    l8-redis    6386
service  l8          8008 POSTGRES_URL=postgresql://dbuser:dbpassword@127.0.0.1:5449/transactional_db \
	MONGODB_URL=mongodb://127.0.0.1:27017/ REDIS_URL=redis://127.0.0.1:6386 \
	DB_POOL_MIN_SIZE=2 DB_POOL_MAX_SIZE=10 CACHE_TTL=300
