#!/usr/bin/env python3
"""Choose the database for `make test` and print its URL on stdout (the reason goes to stderr).

1. DATABASE_URL, when set (CI sets it to its own PostgreSQL database and role).
2. PostgreSQL on 127.0.0.1:5432, when it answers: the tests connect as the role
   ``trueup`` (login, may create databases, not a superuser, so row-level security
   applies) and check RLS again as ``trueup_app``; both are created here when a
   superuser can connect without a password (a fresh development machine).
3. SQLite otherwise; the PostgreSQL-only tests are then skipped, with that reason.
"""

from __future__ import annotations

import os
import sys

OWNER, APP = "trueup", "trueup_app"
HOST, PORT = "127.0.0.1", 5432


def say(message: str) -> None:
    print(f"[make test] {message}", file=sys.stderr)


def ensure_roles() -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host=HOST, port=PORT, user="postgres", dbname="postgres", connect_timeout=2, autocommit=True
        ) as conn:
            conn.execute(
                """DO $$ BEGIN
                  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'trueup') THEN
                    CREATE ROLE trueup LOGIN CREATEDB NOSUPERUSER NOCREATEROLE; END IF;
                  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'trueup_app') THEN
                    CREATE ROLE trueup_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE; END IF;
                END $$"""
            )
            conn.execute(f"GRANT {APP} TO {OWNER}")
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [OWNER]).fetchone():
                conn.execute(f"CREATE DATABASE {OWNER} OWNER {OWNER}")
    except psycopg.Error as exc:
        say(
            f"could not prepare roles as the postgres superuser ({exc.__class__.__name__}); trying as {OWNER}"
        )
    try:
        with psycopg.connect(host=HOST, port=PORT, user=OWNER, dbname=OWNER, connect_timeout=2) as conn:
            superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
            if superuser and superuser[0]:
                say(f"role {OWNER} is a superuser, which would bypass row-level security: not using it")
                return False
        return True
    except psycopg.Error:
        return False


def main() -> None:
    if os.environ.get("DATABASE_URL"):
        scheme = os.environ["DATABASE_URL"].split(":", 1)[0]
        say(f"tests use DATABASE_URL ({scheme})")
        print(os.environ["DATABASE_URL"])
        return
    if ensure_roles():
        say(f"tests use PostgreSQL on {HOST}:{PORT} as the non-superuser role {OWNER}")
        print(f"postgres://{OWNER}@{HOST}:{PORT}/{OWNER}")
        return
    say(f"PostgreSQL is not reachable on {HOST}:{PORT}: tests use SQLite and skip the PostgreSQL-only tests")
    print("sqlite:///var/test.sqlite3")


if __name__ == "__main__":
    main()
