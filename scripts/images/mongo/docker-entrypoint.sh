#!/bin/sh
# docker-entrypoint.sh of the mongo stand-in: runs FerretDB (SQLite backend) on every address
# of the container, its state in /data/db. It has no users: MONGO_INITDB_ROOT_USERNAME and
# MONGO_INITDB_ROOT_PASSWORD are not enforced.
set -eu
if [ "$1" = ferretdb ]; then
	shift
	exec ferretdb -listen-addr 0.0.0.0:27017 -state-dir /data/db -log-level "${FERRETDB_LOG_LEVEL:-warn}" "$@"
fi
exec "$@"
