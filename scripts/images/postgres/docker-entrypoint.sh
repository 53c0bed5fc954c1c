#!/bin/sh
# docker-entrypoint.sh of the postgres stand-in: what the official image's entrypoint does
# where this project relies on it. On the first start (no cluster in $PGDATA) it creates one
# owned by $POSTGRES_USER with $POSTGRES_PASSWORD (scram-sha-256 over TCP, trust on the local
# socket), encoded UTF8 like the official image's, creates $POSTGRES_DB, and runs
# /docker-entrypoint-initdb.d/*.sh and *.sql against a server that listens on the socket only.
# Then it runs the command (postgres by default) as the postgres user.
set -eu

if [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?the postgres image needs POSTGRES_PASSWORD}"
	export POSTGRES_USER="${POSTGRES_USER:-postgres}"
	export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
	user=$POSTGRES_USER db=$POSTGRES_DB
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS: flags, split as the official image splits them
	initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
		--encoding=UTF8 --locale=C.UTF-8 \
		-D "$PGDATA" ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

	pg_ctl -D "$PGDATA" -w -t 60 -o "-c listen_addresses=''" start
	if [ "$db" != postgres ]; then
		psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -v db="$db" <<-'SQL'
			CREATE DATABASE :"db";
		SQL
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		# shellcheck source=/dev/null # the image user's own scripts
		case $f in
		*.sh) echo "running $f" && . "$f" ;;
		*.sql) echo "running $f" && psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -f "$f" ;;
		*) [ -e "$f" ] && echo "ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop
	echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
