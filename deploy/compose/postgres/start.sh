#!/bin/sh
# First start on an empty volume: a cluster whose superuser is reached only locally, plus a
# password-protected role and database for HAPI. Later starts reuse the volume as it is
# (a changed POSTGRES_PASSWORD then needs `down -v`). Then PostgreSQL runs in the foreground.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  quoted=$(printf '%s' "$POSTGRES_PASSWORD" | sed "s/'/''/g")
  # single-user mode (no server, no socket yet): one statement a line, errors on stderr
  postgres --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN PASSWORD '$quoted';
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
  echo "start-postgres: created database $POSTGRES_DB for role $POSTGRES_USER"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql
