#!/bin/sh
# Creates the sidecar's own role and database on the stack's PostgreSQL (idempotent: a second run
# changes nothing but the role's password). Run by the one-shot `sidecar-db` service of
# docker-compose.yml, against a fresh or an existing postgres volume alike.
set -eu
until pg_isready -h "$PGHOST" -U "$PGUSER" -q; do sleep 1; done
psql -v ON_ERROR_STOP=1 -v pw="$SIDECAR_DB_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE connector LOGIN PASSWORD %L', :'pw')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'connector') \gexec
SELECT format('ALTER ROLE connector LOGIN PASSWORD %L', :'pw') \gexec
SELECT 'CREATE DATABASE connector OWNER connector'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'connector') \gexec
REVOKE ALL ON DATABASE connector FROM PUBLIC;
SQL
echo "sidecar-db: role and database 'connector' are ready"
