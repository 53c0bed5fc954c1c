#!/bin/sh
# docker-entrypoint.sh of the mongo stand-in: FerretDB on every address of the container, its
# documents in a private PostgreSQL cluster in /data/db/postgresql that listens on its socket
# only. Both run as the postgres user; on SIGTERM or SIGINT FerretDB is stopped first, then
# PostgreSQL (fast shutdown).
#
# As with mongo:7: when MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD are both set,
# that user is created in the admin database when the data directory is new, and every
# command but the handshake, ping and the like needs authentication (SCRAM-SHA-256); without
# them, no authentication. (mongo:7 also offers SCRAM-SHA-1; FerretDB does not, and the Go
# driver, given a password and no mechanism, picks SCRAM-SHA-256 from the server's list.)
set -eu
if [ "$1" != ferretdb ]; then
	exec "$@"
fi
shift
if [ "$(id -u)" = 0 ]; then
	chown postgres:postgres /data/db
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" ferretdb "$@"
fi
pgdata=/data/db/postgresql
if [ ! -s "$pgdata/PG_VERSION" ]; then
	initdb --username=ferretdb --auth=trust --encoding=UTF8 --locale=C.UTF-8 -D "$pgdata" >/dev/null
fi
pg_ctl -D "$pgdata" -w -t 60 -l /data/db/postgresql.log -o "-c listen_addresses=''" start >/dev/null
if [ -z "$(psql -U ferretdb -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")" ]; then
	createdb -U ferretdb ferretdb
fi
psql -U ferretdb -d ferretdb -q -v ON_ERROR_STOP=1 -1 -f /usr/local/share/ferretdb/id_lookup.sql >/dev/null
if [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ] && [ -n "${MONGO_INITDB_ROOT_PASSWORD:-}" ]; then
	set -- --test-enable-new-auth --setup-database=admin \
		--setup-username="$MONGO_INITDB_ROOT_USERNAME" --setup-password="$MONGO_INITDB_ROOT_PASSWORD" "$@"
fi
# plan_cache_mode: see tools/ferretdb/index.go (a generic plan would not use the _id index).
ferretdb --listen-addr=0.0.0.0:27017 --state-dir=/data/db --telemetry=disable \
	--postgresql-url="postgres://ferretdb@/ferretdb?host=/var/run/postgresql&plan_cache_mode=force_custom_plan" \
	--log-level="${FERRETDB_LOG_LEVEL:-warn}" "$@" &
pid=$!
stopping=0
trap 'stopping=1; kill -TERM "$pid" 2>/dev/null || true' TERM INT
rc=0
wait "$pid" || rc=$?
# The signal ends the first wait early: the second gets FerretDB's own exit status.
if [ "$stopping" = 1 ]; then
	rc=0
	wait "$pid" || rc=$?
fi
pg_ctl -D "$pgdata" -m fast -w stop >/dev/null
exit "$rc"
