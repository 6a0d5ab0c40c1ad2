#!/bin/sh
# Runs once, when the PostgreSQL volume is created. Two roles, neither a superuser:
# the owner runs migrations and owns the tables; the app role (web, worker, beat)
# only reads and writes rows, so row-level security always applies to it.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE trueup_owner LOGIN PASSWORD '${TRUEUP_OWNER_PASSWORD}' NOSUPERUSER NOCREATEROLE;
CREATE ROLE trueup_app LOGIN PASSWORD '${TRUEUP_APP_PASSWORD}' NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS;
CREATE DATABASE trueup OWNER trueup_owner;
SQL
