# shellcheck shell=bash
# L0, single database: one PostgreSQL, no pool (docker-compose/l0.yml).
# Verbs: see the header of scripts/stack.sh.
pg      l0-db 5432 appdb
service l0    8000 DATABASE_URL=postgresql://dbuser:dbpassword@127.0.0.1:5432/appdb
