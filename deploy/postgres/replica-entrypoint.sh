#!/bin/sh
# replica-entrypoint.sh: runs a hot-standby streaming replica of $PRIMARY_HOST in the postgres
# image, as the postgres user (docker-compose/l3.yml).
#
# The first start, with no cluster in $PGDATA, clones the primary with pg_basebackup as
# $REPLICATION_USER through the slot $REPLICATION_SLOT (-R writes standby.signal and
# primary_conninfo). The clone is made beside $PGDATA and moved into place only once complete,
# so an interrupted clone is never mistaken for a cluster. Every later start reuses the clone:
# the replica resumes streaming from its slot where it stopped, and is never cloned again.
set -eu
: "${PGDATA:?}" "${PRIMARY_HOST:?}" "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}" "${REPLICATION_SLOT:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	clone="$PGDATA.clone"
	tries=0
	until rm -rf "$clone" && PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
		--host="$PRIMARY_HOST" --port="${PRIMARY_PORT:-5432}" --username="$REPLICATION_USER" \
		--slot="$REPLICATION_SLOT" --pgdata="$clone" --write-recovery-conf \
		--wal-method=stream --checkpoint=fast; do
		tries=$((tries + 1))
		if [ "$tries" -ge 30 ]; then
			echo "replica: pg_basebackup from $PRIMARY_HOST failed $tries times; giving up" >&2
			exit 1
		fi
		echo "replica: pg_basebackup from $PRIMARY_HOST failed; retrying in 2s" >&2
		sleep 2
	done
	chmod 700 "$clone"
	rm -rf "$PGDATA"
	mv "$clone" "$PGDATA"
	echo "replica: cloned $PRIMARY_HOST into $PGDATA"
fi
exec postgres -D "$PGDATA" -c hot_standby=on
