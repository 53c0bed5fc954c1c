#!/bin/sh
# init-primary.sh: run once by the postgres image's entrypoint when it creates the primary's
# cluster (/docker-entrypoint-initdb.d). It prepares streaming replication for
# docker-compose/l3.yml:
#   * the role $REPLICATION_USER: LOGIN REPLICATION only, not a superuser;
#   * one physical replication slot per name in $REPLICATION_SLOTS, so the primary keeps the
#     WAL a stopped replica has not received yet and a restarted replica resumes streaming
#     (the server's max_slot_wal_keep_size bounds how much);
#   * a pg_hba.conf line letting that role replicate from the networks the server is on
#     (samenet: the compose network), with a password. Never from 0.0.0.0/0.
set -eu
: "${REPLICATION_USER:?}" "${REPLICATION_PASSWORD:?}" "${REPLICATION_SLOTS:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
	-v user="$REPLICATION_USER" -v password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE :"user" WITH LOGIN REPLICATION PASSWORD :'password';
SQL
for slot in $REPLICATION_SLOTS; do
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v slot="$slot" <<'SQL'
SELECT pg_create_physical_replication_slot(:'slot');
SQL
done

echo "host replication $REPLICATION_USER samenet scram-sha-256" >>"$PGDATA/pg_hba.conf"
