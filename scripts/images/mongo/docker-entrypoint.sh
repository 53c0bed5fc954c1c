#!/bin/sh
# docker-entrypoint.sh of the mongo stand-in: FerretDB (tools/ferretdb) on every address of the
# container, its documents in a private PostgreSQL cluster in /data/db/postgresql that listens
# on its socket only. Both run as the postgres user; on SIGTERM or SIGINT FerretDB is stopped
# first, then PostgreSQL (fast shutdown). It has no users: MONGO_INITDB_ROOT_USERNAME and
# MONGO_INITDB_ROOT_PASSWORD are not enforced.
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
ferretdb -listen-addr 0.0.0.0:27017 -postgresql-url "postgres://ferretdb@/ferretdb?host=/var/run/postgresql" \
	-log-level "${FERRETDB_LOG_LEVEL:-warn}" "$@" &
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
